#!/bin/sh
# A shell flow: any executable works as an entrypoint.
set -eu
echo "backup of ${FERRY_DEPLOYMENT} scheduled for ${FERRY_SCHEDULED_TIME} (attempt ${FERRY_ATTEMPT})"
echo "parameters: ${FERRY_PARAMETERS}"
