//! Checking SigV4 signatures of what the real `ferry` sends (`FERRY_API_AUTH=iam`): a local
//! listener that records every request ([`Recorder`]), the parts of a recorded signature, and
//! botocore's `SigV4Auth` (an independent signer, from the emulators' venv) on the same
//! requests. Shared by tests/tests/sigv4.rs (the CLI) and tests/tests/ui_proxy.rs (`ferry ui`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::ferry_bin;

/// The access key of the fixed test credentials.
pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
/// The secret key of the fixed test credentials.
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Signs each request of a JSON list on stdin with botocore at the request's `amz_date`
/// (botocore reads the clock through `botocore.auth.get_current_datetime`), prints the
/// `Authorization` headers as a JSON list.
const BOTOCORE_SIGN: &str = r#"
import datetime, json, sys
from unittest import mock
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

out = []
for r in json.load(sys.stdin):
    creds = Credentials(r["access_key"], r["secret_key"], r["token"])
    when = datetime.datetime.strptime(r["amz_date"], "%Y%m%dT%H%M%SZ")
    req = AWSRequest(method=r["method"], url=r["url"], headers=dict(r["headers"]),
                     data=bytes(r["body"]))
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(creds, "execute-api", r["region"]).add_auth(req)
    out.append(req.headers["Authorization"])
json.dump(out, sys.stdout)
"#;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The emulators' venv python (moto brings botocore), where tests/tests/infra.rs finds it.
pub fn venv_python() -> PathBuf {
    let dir = std::env::var_os("FERRY_EMULATORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".emulators"));
    let python = dir.join("venv").join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: this test signs with botocore from the emulators' venv; \
         run `scripts/emulators.sh install` (or point FERRY_EMULATORS_DIR at an installed one)",
        python.display()
    );
    python
}

/// One request as botocore is asked to sign it.
pub struct BotoRequest {
    /// The method.
    pub method: String,
    /// The full URL, as sent.
    pub url: String,
    /// The headers to sign.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The session token, if any.
    pub token: Option<String>,
    /// The region.
    pub region: String,
    /// The time to sign at (`x-amz-date`).
    pub amz_date: String,
}

/// botocore's `Authorization` for each request, in order.
pub fn botocore_authorizations(requests: &[BotoRequest]) -> Vec<String> {
    let input: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({
                "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "token": r.token,
                "method": r.method, "url": r.url, "headers": r.headers, "body": r.body,
                "region": r.region, "amz_date": r.amz_date,
            })
        })
        .collect();
    let mut child = Command::new(venv_python())
        .args(["-c", BOTOCORE_SIGN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the venv's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&input).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore signing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auths: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(auths.len(), requests.len());
    auths
}

/// A request as the recording listener received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An HTTP/1.1 listener on 127.0.0.1 that records every request and answers it, one request
/// per connection.
pub struct Recorder {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// Starts a recorder that answers every request with `respond`'s (status, JSON body).
    pub fn start(respond: impl Fn(&Recorded, &str) -> (u16, String) + Send + 'static) -> Self {
        Self::start_with_headers(move |req, base| {
            let (status, body) = respond(req, base);
            Reply {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            }
        })
    }

    /// Starts a recorder that answers every request with `respond`'s [`Reply`] (the recorder
    /// adds `content-length` and `connection: close`).
    pub fn start_with_headers(respond: impl Fn(&Recorded, &str) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, base) = (requests.clone(), url.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                let req = read_request(&mut BufReader::new(&mut conn));
                let reply = respond(&req, &base);
                log.lock().unwrap().push(req);
                let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
                for (name, value) in &reply.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                write!(
                    conn,
                    "{head}content-length: {}\r\nconnection: close\r\n\r\n{}",
                    reply.body.len(),
                    reply.body
                )
                .unwrap();
            }
        });
        Self { url, requests }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// What a [`Recorder`] answers.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers, as written.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// Reads one HTTP/1.1 request (with a `content-length` body, if any).
pub fn read_request(reader: &mut impl BufRead) -> Recorded {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap().to_owned();
    let target = parts.next().unwrap().to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Recorded {
        method,
        target,
        headers,
        body,
    }
}

/// The region the fixed test credentials sign for.
pub const REGION: &str = "eu-west-1";
/// The session token of the fixed test credentials (with characters that need encoding).
pub const SESSION_TOKEN: &str = "session/token+with=special";

/// The real `ferry` with `args` against `api` with FERRY_API_AUTH=iam and the fixed test
/// credentials from the environment; nothing from the machine's AWS configuration leaks in.
pub fn ferry_iam_cmd(api: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ferry_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("FERRY_HOME", dir.join("home"))
        .env("FERRY_LOG", "warn")
        .env("FERRY_API_URL", api)
        .env("FERRY_API_AUTH", "iam")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
    cmd
}

/// The `Authorization` header of a SigV4-signed request, split into its parts.
pub struct Sigv4Header {
    /// `ACCESS_KEY/DATE/REGION/SERVICE/aws4_request`.
    pub credential: String,
    /// The names of the signed headers.
    pub signed_headers: Vec<String>,
    /// The hex signature.
    pub signature: String,
}

/// The SigV4 `Authorization` of `req`, split; panics when there is none.
pub fn parse_sigv4(req: &Recorded) -> Sigv4Header {
    let auth = req
        .header("authorization")
        .unwrap_or_else(|| panic!("{} {} was not signed", req.method, req.target));
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .unwrap_or_else(|| panic!("not a SigV4 authorization: {auth}"));
    let mut fields = HashMap::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').unwrap();
        fields.insert(k, v.to_owned());
    }
    Sigv4Header {
        credential: fields["Credential"].clone(),
        signed_headers: fields["SignedHeaders"]
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: fields["Signature"].clone(),
    }
}

/// Checks the shape of a signed request: scope, signed headers, the token alongside.
pub fn assert_signed_for_execute_api(req: &Recorded) {
    let sig = parse_sigv4(req);
    let date = req.header("x-amz-date").expect("x-amz-date sent");
    assert_eq!(
        sig.credential,
        format!(
            "{ACCESS_KEY}/{}/{REGION}/execute-api/aws4_request",
            &date[..8]
        ),
        "{} {}",
        req.method,
        req.target
    );
    for h in ["host", "x-amz-date", "x-amz-security-token"] {
        assert!(
            sig.signed_headers.iter().any(|s| s == h),
            "{h} not signed in {} {}: {:?}",
            req.method,
            req.target,
            sig.signed_headers
        );
    }
    assert_eq!(sig.signature.len(), 64, "{}", sig.signature);
    assert_eq!(req.header("x-amz-security-token"), Some(SESSION_TOKEN));
}

/// What botocore signs for a recorded request: the headers it names as signed, with the values
/// that arrived, at the time it states.
pub fn as_botocore_would_sign(req: &Recorded) -> BotoRequest {
    let sig = parse_sigv4(req);
    BotoRequest {
        method: req.method.clone(),
        url: format!("http://{}{}", req.header("host").unwrap(), req.target),
        headers: sig
            .signed_headers
            .iter()
            .map(|h| (h.clone(), req.header(h).unwrap().to_owned()))
            .collect(),
        body: req.body.clone(),
        token: req.header("x-amz-security-token").map(str::to_owned),
        region: REGION.to_owned(),
        amz_date: req.header("x-amz-date").unwrap().to_owned(),
    }
}
