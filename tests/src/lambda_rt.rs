//! Ferry's Lambda functions as Lambda runs them, on one machine: [`LambdaFunction`] is a Lambda
//! Runtime API emulator (the `2018-06-01` API the `lambda_runtime` crate polls) that starts a
//! function binary — the real `bootstrap` — as a child process pointed at it, queues
//! invocations and hands each to the runtime's long-polling `next`, exactly one at a time, as
//! Lambda does for one execution environment. [`ApiGatewayProxy`] stands where an API Gateway
//! HTTP API stands: it turns each HTTP request into a payload 2.0 event, invokes the function
//! and turns the function's answer back into the HTTP response, so the real `ferry` CLI can be
//! pointed at it. [`stream_event`] reads DynamoDB Local's stream of a table and builds the
//! event a stream event source mapping would deliver to dispatch.
//!
//! # What is emulated, and how closely
//!
//! - Runtime API (`lambda_runtime` 1.x, `requests.rs`): `GET /2018-06-01/runtime/invocation/next`
//!   with the headers `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn`, `Lambda-Runtime-Trace-Id`;
//!   `POST .../invocation/{id}/response` and `.../{id}/error` (both answered `202`);
//!   `POST /2018-06-01/runtime/init/error`. Lambda's 6 MB limits on a synchronous invocation's
//!   event and response are enforced (`Function.ResponseSizeTooLarge`).
//! - The environment: the child gets only what Lambda sets (`AWS_LAMBDA_RUNTIME_API`,
//!   `AWS_LAMBDA_FUNCTION_NAME`, `..._MEMORY_SIZE`, `..._VERSION`, `AWS_LAMBDA_LOG_GROUP_NAME`,
//!   `AWS_LAMBDA_LOG_STREAM_NAME`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `_HANDLER`,
//!   `LAMBDA_TASK_ROOT`, `TZ`, `PATH`) plus [`FunctionConfig::env`] — nothing else of the test
//!   process leaks in (use [`FunctionConfig::aws_env_from_test`] for credentials and emulator
//!   endpoints, which Lambda would give from the execution role and the function's settings).
//! - Not emulated: freezing the process between invocations, the invocation timeout killing
//!   the process (a timed-out invocation is reported, the process is left alone), extensions,
//!   SnapStart, response streaming.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, Notify};

/// Lambda's limit on a synchronous invocation's event and on its response (6 MB).
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// API Gateway's limit on a request's payload (10 MB).
const API_GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// The account the emulated ARNs name.
pub const ACCOUNT: &str = "123456789012";
/// How much of a function's output is kept (the end of it).
const LOG_LIMIT: usize = 256 * 1024;
/// The command that builds the debug function binaries.
pub const BUILD_FUNCTIONS: &str = "cargo build -p ferry-functions --bins";

/// Why an invocation has no result.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The handler failed: the runtime posted to `/invocation/{id}/error`.
    #[error("function {function} failed: {error_type}: {message}")]
    Function {
        /// The function's name.
        function: String,
        /// `errorType` of the runtime's diagnostic.
        error_type: String,
        /// `errorMessage` of the runtime's diagnostic.
        message: String,
    },
    /// The runtime reported an error at init (`/runtime/init/error`).
    #[error(
        "function {function} failed at init: {error_type}: {message}\n--- its output ---\n{logs}"
    )]
    Init {
        /// The function's name.
        function: String,
        /// `errorType` of the runtime's diagnostic.
        error_type: String,
        /// `errorMessage` of the runtime's diagnostic.
        message: String,
        /// The end of the function's stdout and stderr.
        logs: String,
    },
    /// The process exited (a `main` that returned an error before the runtime started, a
    /// panic, a crash).
    #[error("function {function} exited ({status}) before answering\n--- its output ---\n{logs}")]
    Exited {
        /// The function's name.
        function: String,
        /// How it exited.
        status: String,
        /// The end of the function's stdout and stderr.
        logs: String,
    },
    /// No answer within the function's timeout.
    #[error("function {function} did not answer within {after:?}\n--- its output ---\n{logs}")]
    Timeout {
        /// The function's name.
        function: String,
        /// The timeout.
        after: Duration,
        /// The end of the function's stdout and stderr.
        logs: String,
    },
    /// The event is larger than Lambda accepts for a synchronous invocation.
    #[error("the event is {size} bytes: Lambda accepts at most {PAYLOAD_LIMIT} (RequestEntityTooLargeException)")]
    RequestTooLarge {
        /// The event's size in bytes.
        size: usize,
    },
    /// The function's response is not JSON (every response of these functions is).
    #[error("function {function} answered with a body that is not JSON ({source}): {body}")]
    NotJson {
        /// The function's name.
        function: String,
        /// The body, lossily decoded.
        body: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// How to start a function: its binary, name and environment.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`, the ARN's last part).
    pub name: String,
    /// The executable: a `bootstrap` or a debug build of a `ferry-*-lambda` binary.
    pub binary: PathBuf,
    /// The function's environment variables (on top of those Lambda sets).
    pub env: BTreeMap<String, String>,
    /// The invocation timeout (`Lambda-Runtime-Deadline-Ms`, and how long `invoke` waits).
    pub timeout: Duration,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB.
    pub memory_mb: u32,
}

impl FunctionConfig {
    /// `binary` as the function `name`: 60 s timeout, 512 MB, `FERRY_LOG=info`.
    pub fn new(name: &str, binary: impl Into<PathBuf>) -> Self {
        let mut env = BTreeMap::new();
        env.insert("FERRY_LOG".into(), "info".into());
        Self {
            name: name.to_owned(),
            binary: binary.into(),
            env,
            timeout: Duration::from_secs(60),
            memory_mb: 512,
        }
    }

    /// Sets the function's variable `key`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Passes this process's AWS credentials, region and endpoint variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_EC2_METADATA_DISABLED`,
    /// `AWS_ENDPOINT_URL*`): on Lambda the credentials come from the execution role; here they
    /// are the emulators' test ones.
    pub fn aws_env_from_test(mut self) -> Self {
        for (k, v) in std::env::vars() {
            let pass = matches!(
                k.as_str(),
                "AWS_ACCESS_KEY_ID"
                    | "AWS_SECRET_ACCESS_KEY"
                    | "AWS_SESSION_TOKEN"
                    | "AWS_REGION"
                    | "AWS_EC2_METADATA_DISABLED"
            ) || k.starts_with("AWS_ENDPOINT_URL");
            if pass {
                self.env.insert(k, v);
            }
        }
        self
    }
}

/// The directory of the function binaries: `FERRY_LAMBDA_BIN_DIR` when set, else the directory
/// of the `ferry` binary the tests use ([`crate::ferry_bin`]: `target/debug`), where
/// `cargo build -p ferry-functions --bins` puts them (built here when `FERRY_BIN` is unset).
pub fn functions_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("FERRY_LAMBDA_BIN_DIR") {
            return PathBuf::from(d);
        }
        let ferry = crate::ferry_bin();
        if std::env::var_os("FERRY_BIN").is_none() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "ferry-functions", "--bins"])
                .current_dir(root)
                .status()
                .expect("running cargo build -p ferry-functions");
            assert!(status.success(), "`{BUILD_FUNCTIONS}` failed");
        }
        ferry
            .parent()
            .expect("the ferry binary has a directory")
            .to_path_buf()
    })
    .clone()
}

/// The function binary `name` (`ferry-api-lambda`, `ferry-tick-lambda`,
/// `ferry-dispatch-lambda`) in [`functions_dir`]: `DIR/NAME` (cargo's layout: the debug builds),
/// else `DIR/NAME/bootstrap` (cargo-lambda's layout, which `scripts/package-functions.sh` leaves
/// unpacked next to each zip: `FERRY_LAMBDA_BIN_DIR=<target>/lambda` tests the release
/// bootstraps). Panics naming the build command when neither exists.
pub fn function_binary(name: &str) -> PathBuf {
    let dir = functions_dir();
    let flat = dir.join(name);
    if flat.is_file() {
        return flat;
    }
    let bootstrap = flat.join("bootstrap");
    assert!(
        bootstrap.is_file(),
        "neither {} nor {} exists: build the functions with `{BUILD_FUNCTIONS}` (or point FERRY_LAMBDA_BIN_DIR at them)",
        flat.display(),
        bootstrap.display()
    );
    bootstrap
}

type Outcome = Result<Value, LambdaError>;

struct Invocation {
    id: String,
    event: Bytes,
    done: oneshot::Sender<Outcome>,
}

/// What the Runtime API server, the proxy and the invokers share.
struct Shared {
    name: String,
    arn: String,
    timeout: Duration,
    queue: Mutex<VecDeque<Invocation>>,
    queued: Notify,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    started: Instant,
    first_next: OnceLock<Instant>,
    init_error: Mutex<Option<(String, String)>>,
    child: Mutex<Child>,
    logs: Arc<Mutex<String>>,
}

impl Shared {
    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// Why the process can answer nothing any more: it exited (after an init error or not).
    fn gone(&self) -> Option<LambdaError> {
        let status = self.exit_status()?;
        let logs = self.logs();
        Some(match self.init_error.lock().unwrap().clone() {
            Some((error_type, message)) => LambdaError::Init {
                function: self.name.clone(),
                error_type,
                message,
                logs,
            },
            None => LambdaError::Exited {
                function: self.name.clone(),
                status: status.to_string(),
                logs,
            },
        })
    }

    async fn invoke(self: &Arc<Self>, event: &Value) -> Outcome {
        let event = serde_json::to_vec(event).expect("a JSON value serializes");
        if event.len() > PAYLOAD_LIMIT {
            return Err(LambdaError::RequestTooLarge { size: event.len() });
        }
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().unwrap().push_back(Invocation {
            id: uuid::Uuid::new_v4().to_string(),
            event: Bytes::from(event),
            done: tx,
        });
        self.queued.notify_one();
        let deadline = Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout(Duration::from_millis(100), &mut rx).await {
                Ok(Ok(outcome)) => return outcome,
                Ok(Err(_)) => unreachable!("an invocation's sender lives until it is answered"),
                Err(_) => {
                    if let Some(e) = self.gone() {
                        return Err(e);
                    }
                    if Instant::now() >= deadline {
                        return Err(LambdaError::Timeout {
                            function: self.name.clone(),
                            after: self.timeout,
                            logs: self.logs(),
                        });
                    }
                }
            }
        }
    }
}

/// A function binary running behind this process's Lambda Runtime API emulator (module docs).
/// The process is killed on drop.
pub struct LambdaFunction {
    shared: Arc<Shared>,
    /// `127.0.0.1:PORT` of the Runtime API (the child's `AWS_LAMBDA_RUNTIME_API`).
    pub runtime_api: SocketAddr,
    rt: tokio::runtime::Runtime,
}

impl LambdaFunction {
    /// Starts the Runtime API on 127.0.0.1:0 and the function's process against it. Returns at
    /// once: the first invocation waits for the runtime's first `next` (its init).
    pub fn start(config: FunctionConfig) -> Self {
        assert!(
            config.binary.is_file(),
            "function binary {} does not exist",
            config.binary.display()
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the Runtime API's tokio runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the Runtime API on 127.0.0.1:0");
        let runtime_api = listener.local_addr().expect("the Runtime API's address");
        let region = config
            .env
            .get("AWS_REGION")
            .cloned()
            .unwrap_or_else(|| "us-east-1".into());
        let task_root = config
            .binary
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(&config.binary);
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &config.name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                config.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", config.name),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("2026/01/01/[$LATEST]{}", uuid::Uuid::new_v4().simple()),
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_REGION", &region)
            .env("AWS_DEFAULT_REGION", &region)
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("LAMBDA_RUNTIME_DIR", &task_root)
            .env("TZ", ":UTC")
            .env("LANG", "en_US.UTF-8")
            .env("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
            .envs(&config.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", config.binary.display()));
        let logs = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), logs.clone());
        collect(child.stderr.take().unwrap(), logs.clone());
        let shared = Arc::new(Shared {
            arn: format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{}", config.name),
            name: config.name,
            timeout: config.timeout,
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            started,
            first_next: OnceLock::new(),
            init_error: Mutex::new(None),
            child: Mutex::new(child),
            logs,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(axum::extract::DefaultBodyLimit::max(2 * PAYLOAD_LIMIT))
            .with_state(shared.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        Self {
            shared,
            runtime_api,
            rt,
        }
    }

    /// Invokes the function synchronously (`RequestResponse`) with `event`; its result.
    pub fn invoke(&self, event: Value) -> Result<Value, LambdaError> {
        self.rt.block_on(self.shared.invoke(&event))
    }

    /// Waits for the runtime's first `next` request; the init time: process start → first
    /// `next` (what Lambda reports as "Init Duration").
    pub fn wait_ready(&self, timeout: Duration) -> Result<Duration, LambdaError> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(t) = self.shared.first_next.get() {
                return Ok(*t - self.shared.started);
            }
            if let Some(e) = self.shared.gone() {
                return Err(e);
            }
            if Instant::now() >= until {
                return Err(LambdaError::Timeout {
                    function: self.shared.name.clone(),
                    after: timeout,
                    logs: self.logs(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// [`LambdaFunction::wait_ready`] with the function's timeout, panicking on failure.
    pub fn init_duration(&self) -> Duration {
        self.wait_ready(self.shared.timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The function's stdout and stderr so far (the end of them).
    pub fn logs(&self) -> String {
        self.shared.logs()
    }

    /// The function's ARN.
    pub fn arn(&self) -> &str {
        &self.shared.arn
    }

    /// Starts an API Gateway HTTP API (payload 2.0) in front of this function, on 127.0.0.1:0.
    pub fn api_gateway(&self) -> ApiGatewayProxy {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the API Gateway proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("the proxy's address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(proxy)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(ProxyState {
                function: self.shared.clone(),
                requests: requests.clone(),
            });
        let task = self.rt.spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        ApiGatewayProxy {
            url: format!("http://{addr}"),
            requests,
            task,
        }
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        let mut child = self.shared.child.lock().unwrap();
        if let Err(e) = child.kill() {
            eprintln!("killing function {}: {e}", self.shared.name);
        }
        if let Err(e) = child.wait() {
            eprintln!("waiting for function {}: {e}", self.shared.name);
        }
    }
}

/// Keeps the end of a child's output stream in `into`.
fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut logs = into.lock().unwrap();
            logs.push_str(&String::from_utf8_lossy(&buf[..n]));
            if logs.len() > LOG_LIMIT {
                let mut cut = logs.len() - LOG_LIMIT;
                while !logs.is_char_boundary(cut) {
                    cut += 1;
                }
                logs.drain(..cut);
            }
        }
    });
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis()
}

/// `GET /2018-06-01/runtime/invocation/next`: long-polls for the next invocation.
async fn next(State(s): State<Arc<Shared>>) -> Response {
    s.first_next.get_or_init(Instant::now);
    let inv = loop {
        if let Some(inv) = s.queue.lock().unwrap().pop_front() {
            break inv;
        }
        s.queued.notified().await;
    };
    s.in_flight.lock().unwrap().insert(inv.id.clone(), inv.done);
    let deadline = epoch_ms() + s.timeout.as_millis();
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        (epoch_ms() / 1000) as u32,
        &uuid::Uuid::new_v4().simple().to_string()[..24],
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    (
        [
            ("Lambda-Runtime-Aws-Request-Id", inv.id),
            ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
            ("Lambda-Runtime-Invoked-Function-Arn", s.arn.clone()),
            ("Lambda-Runtime-Trace-Id", trace),
            ("Content-Type", "application/json".into()),
        ],
        inv.event,
    )
        .into_response()
}

fn unknown_request(id: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"errorMessage": format!("Invalid request ID: {id}"), "errorType": "InvalidRequestID"})),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

/// `POST /2018-06-01/runtime/invocation/{id}/response`.
async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let Some(done) = s.in_flight.lock().unwrap().remove(&id) else {
        return unknown_request(&id);
    };
    if body.len() > PAYLOAD_LIMIT {
        let message = format!(
            "Response payload size ({} bytes) exceeded maximum allowed payload size ({PAYLOAD_LIMIT} bytes).",
            body.len()
        );
        // The invoker may have given up (timeout): nobody to tell then.
        done.send(Err(LambdaError::Function {
            function: s.name.clone(),
            error_type: "Function.ResponseSizeTooLarge".into(),
            message: message.clone(),
        }))
        .ok();
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"errorMessage": message, "errorType": "RequestEntityTooLarge"})),
        )
            .into_response();
    }
    let outcome = serde_json::from_slice(&body).map_err(|e| LambdaError::NotJson {
        function: s.name.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        source: e,
    });
    done.send(outcome).ok();
    accepted()
}

/// The runtime's diagnostic body: `{"errorType": ..., "errorMessage": ...}`.
fn diagnostic(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
    };
    (field("errorType"), field("errorMessage"))
}

/// `POST /2018-06-01/runtime/invocation/{id}/error`.
async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let Some(done) = s.in_flight.lock().unwrap().remove(&id) else {
        return unknown_request(&id);
    };
    let (error_type, message) = diagnostic(&body);
    done.send(Err(LambdaError::Function {
        function: s.name.clone(),
        error_type,
        message,
    }))
    .ok();
    accepted()
}

/// `POST /2018-06-01/runtime/init/error`.
async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    *s.init_error.lock().unwrap() = Some(diagnostic(&body));
    accepted()
}

/// An API Gateway HTTP API with a `$default` route to a [`LambdaFunction`] (payload format 2.0,
/// no authorizer); stops with the function, or on drop.
pub struct ApiGatewayProxy {
    /// `http://127.0.0.1:PORT`: the API's URL (`FERRY_API_URL`).
    pub url: String,
    requests: Arc<Mutex<Vec<ProxiedRequest>>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// One request the proxy answered (its access log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The HTTP method.
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The request body's size in bytes.
    pub body_bytes: usize,
}

impl ApiGatewayProxy {
    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct ProxyState {
    function: Arc<Shared>,
    requests: Arc<Mutex<Vec<ProxiedRequest>>>,
}

impl Drop for ApiGatewayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether API Gateway passes a body of this content type as text (otherwise base64).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct == "application/json"
        || ct.ends_with("+json")
        || ct == "application/xml"
        || ct.ends_with("+xml")
        || ct == "application/x-www-form-urlencoded"
        || ct == "application/javascript"
}

/// Headers API Gateway does not pass on (hop-by-hop).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// The payload 2.0 event API Gateway sends for `req` (routeKey `$default`, stage `$default`).
pub fn api_gateway_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    source_ip: &str,
) -> Value {
    let mut hs = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let n = name.as_str().to_ascii_lowercase();
        if HOP_BY_HOP.contains(&n.as_str()) {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if n == "cookie" {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        hs.insert(n, Value::String(values.join(",")));
    }
    let now = epoch_ms();
    let request_id = uuid::Uuid::new_v4().to_string();
    hs.insert("x-forwarded-for".into(), source_ip.into());
    hs.insert("x-forwarded-proto".into(), "http".into());
    hs.insert(
        "x-amzn-trace-id".into(),
        format!(
            "Root=1-{:08x}-{}",
            (now / 1000) as u32,
            &uuid::Uuid::new_v4().simple().to_string()[..24]
        )
        .into(),
    );
    let host = hs
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("localhost")
        .to_owned();
    let user_agent = hs.get("user-agent").cloned().unwrap_or(Value::Null);
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hs,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "ferrylocal",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(""),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now as u64,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        let mut params = Map::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match params.get_mut(k.as_ref()) {
                Some(Value::String(prev)) => {
                    prev.push(',');
                    prev.push_str(&v);
                }
                _ => {
                    params.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            }
        }
        event["queryStringParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        let ct = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match std::str::from_utf8(body) {
            Ok(text) if is_text(ct) => event["body"] = text.into(),
            _ => {
                event["body"] = base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into();
                event["isBase64Encoded"] = true.into();
            }
        }
    }
    event
}

/// The HTTP response API Gateway makes of a payload 2.0 function result.
pub fn api_gateway_response(result: &Value) -> Response {
    let Some(status) = result
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
    else {
        // API Gateway's inference for a result without statusCode: the result is the body.
        return (StatusCode::OK, axum::Json(result.clone())).into_response();
    };
    let body = match result.get("body").and_then(Value::as_str) {
        None => Vec::new(),
        Some(b) if result["isBase64Encoded"] == true => {
            match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => bytes,
                Err(_) => return internal_error(),
            }
        }
        Some(b) => b.as_bytes().to_vec(),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let hs = resp.headers_mut();
    let mut add = |k: &str, v: &str| {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(v)) {
            if !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                hs.append(k, v);
            }
        }
    };
    if let Some(Value::Object(m)) = result.get("multiValueHeaders") {
        for (k, vs) in m {
            for v in vs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                add(k, v);
            }
        }
    }
    if let Some(Value::Object(m)) = result.get("headers") {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                add(k, v);
            }
        }
    }
    for c in result
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        add("set-cookie", c);
    }
    resp
}

fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"message": "Internal Server Error"})),
    )
        .into_response()
}

/// The proxy's one route: HTTP request → event → invoke → HTTP response.
async fn proxy(
    State(s): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let (body, resp) = match axum::body::to_bytes(body, API_GATEWAY_BODY_LIMIT).await {
        Ok(body) => {
            let event = api_gateway_event(
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &parts.headers,
                &body,
                &peer.ip().to_string(),
            );
            let resp = match s.function.invoke(&event).await {
                Ok(result) => api_gateway_response(&result),
                Err(LambdaError::RequestTooLarge { .. }) => too_large(),
                Err(e) => {
                    eprintln!("API Gateway proxy: {} {}: {e}", parts.method, parts.uri);
                    internal_error()
                }
            };
            (body.len(), resp)
        }
        Err(_) => (API_GATEWAY_BODY_LIMIT, too_large()),
    };
    s.requests.lock().unwrap().push(ProxiedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        status: resp.status().as_u16(),
        body_bytes: body,
    });
    resp
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(json!({"message": "Request Entity Too Large"})),
    )
        .into_response()
}

/// An EventBridge scheduled event (`detail-type: Scheduled Event`) from rule `rule`, as
/// Lambda delivers it to a function the rule targets.
pub fn scheduled_event(rule: &str) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        "resources": [format!("arn:aws:events:us-east-1:{ACCOUNT}:rule/{rule}")],
        "detail": {},
    })
}

/// The event a DynamoDB stream event source mapping with filter pattern `filter` (Lambda's
/// `FilterCriteria` JSON) delivers for every record of `table`'s stream, read from DynamoDB
/// Local (every shard from `TRIM_HORIZON`), in one batch in stream order; records the filter
/// drops are left out, as Lambda leaves them out. Returns the event and how many records the
/// stream held.
pub fn stream_event(table: &str, filter: &str) -> (Value, usize) {
    let filter: Value = serde_json::from_str(filter).expect("the filter pattern is JSON");
    let table = table.to_owned();
    let records = on_own_runtime(async move { read_stream(&table).await });
    let total = records.len();
    let kept: Vec<Value> = records
        .into_iter()
        .filter(|r| matches_filter(&filter, r))
        .collect();
    (json!({ "Records": kept }), total)
}

/// Runs `fut` to completion on a runtime of its own (the tests are synchronous).
fn on_own_runtime<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Empty `GetRecords` pages in a row that end the reading of a shard.
const EMPTY_PAGES: usize = 3;

/// Every record of `table`'s stream, as Lambda's JSON records.
async fn read_stream(table: &str) -> Vec<Value> {
    let sdk = ferry_aws::config::sdk_config().await;
    let streams = ferry_aws::config::dynamodb_streams_client(&sdk);
    let dynamodb = ferry_aws::config::dynamodb_client(&sdk);
    let arn = ferry_aws::stream::StreamReader::new(streams.clone(), dynamodb, table)
        .stream_arn()
        .await
        .unwrap_or_else(|e| panic!("the stream of table {table}: {e}"));
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let description = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStream {arn}: {e:?}"));
    let shards = description
        .stream_description()
        .map(|d| d.shards().to_vec())
        .unwrap_or_default();
    let mut out = Vec::new();
    for shard in shards {
        let shard_id = shard.shard_id().expect("a shard has an id");
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard_id)
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator {shard_id}: {e:?}"))
            .shard_iterator
            .map(|s| s.to_owned());
        // An open shard never ends its iterator: stop at an empty page — after a few, as
        // DynamoDB may answer empty pages before a shard's first records.
        let mut empty = 0;
        while let Some(it) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetRecords {shard_id}: {e:?}"));
            if page.records().is_empty() {
                empty += 1;
                if empty >= EMPTY_PAGES {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                empty = 0;
            }
            out.extend(
                page.records()
                    .iter()
                    .map(|r| lambda_record(r, &arn, &region)),
            );
            iterator = page.next_shard_iterator;
        }
    }
    out
}

/// A stream record in the JSON Lambda delivers (`eventID`, `eventName`, `dynamodb.NewImage`
/// in DynamoDB JSON, ...).
fn lambda_record(r: &aws_sdk_dynamodbstreams::types::Record, arn: &str, region: &str) -> Value {
    let image = |m: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        m.map(|m| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), attribute_json(v)))
                    .collect(),
            )
        })
    };
    let mut change = Map::new();
    if let Some(d) = r.dynamodb() {
        if let Some(t) = d.approximate_creation_date_time() {
            change.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
        }
        for (k, v) in [
            ("Keys", image(d.keys.as_ref())),
            ("NewImage", image(d.new_image.as_ref())),
            ("OldImage", image(d.old_image.as_ref())),
        ] {
            if let Some(v) = v {
                change.insert(k.into(), v);
            }
        }
        if let Some(s) = d.sequence_number() {
            change.insert("SequenceNumber".into(), s.into());
        }
        if let Some(s) = d.size_bytes() {
            change.insert("SizeBytes".into(), s.into());
        }
        if let Some(v) = d.stream_view_type() {
            change.insert("StreamViewType".into(), v.as_str().into());
        }
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": arn,
    })
}

/// One attribute in DynamoDB JSON.
fn attribute_json(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match v {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::B(b) => json!({ "B": b64(b) }),
        A::Ss(v) => json!({ "SS": v }),
        A::Ns(v) => json!({ "NS": v }),
        A::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::Null(n) => json!({ "NULL": n }),
        A::L(l) => json!({ "L": l.iter().map(attribute_json).collect::<Vec<_>>() }),
        A::M(m) => json!({
            "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<Map<_, _>>()
        }),
        other => panic!("an attribute type this emulator does not know: {other:?}"),
    }
}

/// Whether `record` matches a Lambda filter pattern made of nested objects and arrays of
/// exact values (the only forms Ferry's pattern uses; others are refused).
pub fn matches_filter(pattern: &Value, record: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        panic!("a filter pattern is an object: {pattern}");
    };
    fields.iter().all(|(k, p)| {
        let Some(v) = record.get(k) else {
            return false;
        };
        match p {
            Value::Object(_) => matches_filter(p, v),
            Value::Array(allowed) => allowed.iter().any(|a| {
                assert!(
                    !a.is_object(),
                    "content filters ({a}) are not supported by this emulator"
                );
                a == v
            }),
            _ => panic!("a filter pattern's leaves are arrays: {k}: {p}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn event_has_the_payload_2_0_shape_with_cookies_apart_and_repeated_headers_joined() {
        let h = headers(&[
            ("Host", "api.example"),
            ("Accept", "a"),
            ("Accept", "b"),
            ("Cookie", "x=1; y=2"),
            ("Connection", "keep-alive"),
            ("Content-Type", "application/json"),
        ]);
        let e = api_gateway_event("PUT", "/v1/x", "a=1&a=2&b=c%20d", &h, b"{}", "127.0.0.1");
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "$default");
        assert_eq!(e["rawPath"], "/v1/x");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=c%20d");
        assert_eq!(e["queryStringParameters"], json!({"a": "1,2", "b": "c d"}));
        assert_eq!(e["headers"]["accept"], "a,b");
        assert_eq!(e["headers"]["x-forwarded-for"], "127.0.0.1");
        assert!(e["headers"].get("cookie").is_none(), "{e}");
        assert!(e["headers"].get("connection").is_none(), "{e}");
        assert_eq!(e["cookies"], json!(["x=1", "y=2"]));
        assert_eq!(e["requestContext"]["http"]["method"], "PUT");
        assert_eq!(e["requestContext"]["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(e["requestContext"]["stage"], "$default");
        assert_eq!(e["body"], "{}");
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn binary_body_is_base64_encoded_and_an_empty_one_left_out() {
        let h = headers(&[("Content-Type", "application/gzip")]);
        let e = api_gateway_event("PUT", "/b", "", &h, &[0x1f, 0x8b, 0xff], "127.0.0.1");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "H4v/");
        assert!(e.get("queryStringParameters").is_none(), "{e}");
        let e = api_gateway_event("GET", "/b", "", &HeaderMap::new(), b"", "127.0.0.1");
        assert!(e.get("body").is_none(), "{e}");
    }

    #[test]
    fn response_decodes_base64_bodies_and_sets_cookies() {
        let r = api_gateway_response(&json!({
            "statusCode": 201,
            "headers": {"content-type": "application/gzip", "content-length": "999"},
            "cookies": ["a=1", "b=2"],
            "body": "H4v/",
            "isBase64Encoded": true,
        }));
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["content-type"], "application/gzip");
        assert!(r.headers().get("content-length").is_none());
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(r.into_body(), 1024))
            .unwrap();
        assert_eq!(&body[..], &[0x1f, 0x8b, 0xff]);
    }

    #[test]
    fn filter_keeps_only_records_with_the_listed_values() {
        let pattern: Value = serde_json::from_str(
            r#"{"dynamodb":{"NewImage":{"sk":{"S":["R"]},"due_pk":{"S":["X#W"]}}}}"#,
        )
        .unwrap();
        let record = |sk: &str, due: Option<&str>| {
            let mut image = json!({"sk": {"S": sk}});
            if let Some(d) = due {
                image["due_pk"] = json!({"S": d});
            }
            json!({"eventName": "INSERT", "dynamodb": {"NewImage": image}})
        };
        assert!(matches_filter(&pattern, &record("R", Some("X#W"))));
        assert!(!matches_filter(&pattern, &record("R", Some("Q#prod"))));
        assert!(!matches_filter(&pattern, &record("R", None)));
        assert!(!matches_filter(&pattern, &record("D", Some("X#W"))));
        assert!(!matches_filter(
            &pattern,
            &json!({"eventName": "REMOVE", "dynamodb": {}})
        ));
    }
}
