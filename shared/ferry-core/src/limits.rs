//! Size limits shared by every backend. DynamoDB caps an item at 400 KB; a run item carries its
//! parameters plus state history, a deployment item its parameters, env and schedules, so user
//! payloads are capped well below that.

/// Largest serialized `parameters` object (deployment defaults, or a run's merged parameters).
pub const MAX_PARAMETERS_BYTES: usize = 128 * 1024;
/// Largest serialized `env` map of a deployment.
pub const MAX_ENV_BYTES: usize = 32 * 1024;
/// Largest serialized deployment spec as a whole.
pub const MAX_DEPLOYMENT_BYTES: usize = 300 * 1024;
/// Most schedules on one deployment.
pub const MAX_SCHEDULES: usize = 20;
/// Most tags on one deployment.
pub const MAX_TAGS: usize = 50;
/// State history entries kept on a run (the oldest beyond this are dropped).
pub const MAX_HISTORY: usize = 50;
/// Largest code bundle accepted by the embedded upload path (API Gateway caps a body at 10 MB,
/// so the AWS path uploads through a presigned URL instead).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024 * 1024;
/// Largest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;
