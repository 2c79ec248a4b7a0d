"""A tiny Ferry flow: Ferry calls `hello(**parameters)`."""

import os


def hello(name="world", times=2):
    for i in range(times):
        print(f"hello {name} ({i + 1}/{times}) from run {os.environ['FERRY_RUN_ID']}")
    return "done"
