//! `ferry ui`: the real binary as a localhost proxy in front of a recorder (every request signed
//! with SigV4, as botocore signs it; no browser cookie or credential goes further), a real
//! token-protected `ferry server`, and the real API Lambda on the emulators (the AWS backend).
//! Requests are written by hand on a socket, so that a test can send any `Host`, `Origin` or
//! cookie a browser (or a hostile page) could.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_tests::lambda_rt::{function_binary, FunctionConfig, LambdaFunction};
use ferry_tests::sigv4_check::{
    as_botocore_would_sign, assert_signed_for_execute_api, botocore_authorizations, ferry_iam_cmd,
    parse_sigv4, venv_python, Recorded, Recorder, Reply,
};
use ferry_tests::{ferry_bin, require_emulators, write_project, Server};
use serde_json::Value;

/// A running `ferry ui --port 0`.
struct Ui {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The line it printed at start.
    banner: String,
}

impl Ui {
    /// Starts `cmd` (a `ferry ui` command) and waits for its banner.
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ferry ui");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                tx.send(line).unwrap();
            }
            for _ in lines {}
        });
        let banner = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "ferry ui printed no banner ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {banner:?}"));
        Self {
            child,
            addr: url.trim_start_matches("http://").to_owned(),
            banner,
        }
    }

    fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }

    /// `METHOD path` with `headers` (a `Host` of `127.0.0.1:PORT` unless given) and `body`.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        send(&self.addr, method, path, headers, body)
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", path, headers, b"")
    }

    /// `Origin: http://127.0.0.1:PORT`: what the dashboard's own pages send.
    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("stopping ferry ui: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for ferry ui: {e}");
        }
    }
}

/// `METHOD path` to `addr` (`HOST:PORT`) on a connection of its own, with `headers` (a `Host`
/// of `addr` unless given) and `body`.
fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    read_answer(conn)
}

/// An HTTP response as read from the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-cased names; repeated headers joined with `\n`.
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn read_answer(conn: TcpStream) -> Answer {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("not a status line: {line:?}"))
        .parse()
        .unwrap();
    let mut headers: HashMap<String, String> = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push('\n');
                v.push_str(value.trim());
            })
            .or_insert_with(|| value.trim().to_owned());
    }
    let mut body = Vec::new();
    match headers.get("content-length") {
        Some(n) => {
            body.resize(n.parse().unwrap(), 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `ferry ui --port 0` to `api` with FERRY_API_AUTH=iam and the fixed test credentials.
fn ui_iam(api: &str, dir: &Path) -> Ui {
    Ui::start(ferry_iam_cmd(api, dir, &["ui", "--port", "0"]))
}

/// `ferry ui ARGS` to `api` with only `env` (no AWS configuration, no token unless given).
fn ui_cmd(api: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(ferry_bin());
    cmd.arg("ui")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("FERRY_LOG", "warn")
        .env("FERRY_API_URL", api)
        .envs(env.iter().copied());
    cmd
}

const RUN: &str = "0193a0c4-5c1e-7e2a-9d7b-3f1c2e4a5b6c";
const COOKIE: &str = "ferry_session=browser-session-value; other=1";

/// A request: method, path and query, headers, body.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>);

/// Requests a browser on the dashboard makes — pages, an asset, `/v1`, the live endpoint and
/// form POSTs — each with the browser's cookie, an `Authorization` of its own and headers the
/// proxy keeps; sent through a proxy to a recorder. Returns (what was sent, what arrived).
fn browse_through_the_proxy(ui: &Ui, rec: &Recorder) -> Vec<(String, String, Vec<u8>)> {
    let origin = ui.origin();
    let form = b"parameters=%7B%22n%22%3A+3%7D".to_vec();
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/".into(),
            vec![("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")],
            vec![],
        ),
        (
            "GET",
            "/assets/app.3f1c2e4a.css".into(),
            vec![("accept", "text/css,*/*;q=0.1")],
            vec![],
        ),
        (
            "GET",
            "/runs?state=late&work_queue=night%20shift&before=0193a0c4".into(),
            vec![("accept-language", "en-GB,en;q=0.9")],
            vec![],
        ),
        (
            "GET",
            format!("/runs/{RUN}/live?offset=3"),
            vec![("accept", "application/json")],
            vec![],
        ),
        (
            "GET",
            "/v1/flow-runs?limit=20&deployment=etl%2Fnightly&state=scheduled%2Clate".into(),
            vec![],
            vec![],
        ),
        (
            "POST",
            format!("/runs/{RUN}/cancel"),
            vec![
                ("origin", origin.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"confirm=1".to_vec(),
        ),
        (
            "POST",
            "/deployments/etl/nightly/run".into(),
            vec![
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            form,
        ),
        (
            "PATCH",
            "/v1/work-queues/night%20shift".into(),
            vec![
                ("origin", origin.as_str()),
                ("content-type", "application/json"),
            ],
            br#"{"paused":true}"#.to_vec(),
        ),
    ];
    let mut sent = Vec::new();
    for (method, path, extra, body) in &cases {
        let mut headers = vec![
            ("cookie", COOKIE),
            ("authorization", "Bearer the-browsers-own"),
            ("user-agent", "Mozilla/5.0 (test)"),
            ("x-requested-with", "XMLHttpRequest"),
        ];
        headers.extend(extra.iter().copied());
        let answer = ui.send(method, path, &headers, body);
        assert_eq!(answer.status, 200, "{method} {path}: {answer:?}");
        assert_eq!(answer.body, r#"{"ok":true}"#, "{method} {path}");
        sent.push((method.to_string(), path.clone(), body.clone()));
    }
    let got = rec.requests();
    assert_eq!(got.len(), sent.len(), "{got:?}");
    sent
}

fn ok_recorder() -> Recorder {
    Recorder::start(|_, _| (200, r#"{"ok":true}"#.to_owned()))
}

fn assert_forwarded_as_sent(sent: &[(String, String, Vec<u8>)], got: &[Recorded], upstream: &str) {
    for ((method, path, body), req) in sent.iter().zip(got) {
        let what = format!("{method} {path}");
        assert_eq!(&req.method, method, "{what}");
        assert_eq!(&req.target, path, "{what}");
        assert_eq!(&req.body, body, "{what}");
        for kept_back in ["cookie", "user-agent", "x-requested-with"] {
            assert_eq!(
                req.header(kept_back),
                None,
                "{kept_back} forwarded on {what}"
            );
        }
        assert_ne!(
            req.header("authorization"),
            Some("Bearer the-browsers-own"),
            "{what}"
        );
        let unsafe_method = method != "GET";
        // The proxy vouches for the changes it checked, as a browser on the API's origin would.
        assert_eq!(
            req.header("origin"),
            unsafe_method.then_some(upstream),
            "{what}"
        );
        assert_eq!(
            req.header("sec-fetch-site"),
            unsafe_method.then_some("same-origin"),
            "{what}"
        );
    }
    assert_eq!(
        got[0].header("accept"),
        Some("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
    );
    assert_eq!(got[2].header("accept-language"), Some("en-GB,en;q=0.9"));
    assert_eq!(
        got[5].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn every_path_is_forwarded_signed_for_execute_api_without_the_browsers_cookie_or_credentials() {
    let rec = ok_recorder();
    let dir = tempfile::tempdir().unwrap();
    let ui = ui_iam(&rec.url, dir.path());
    assert_eq!(
        ui.banner,
        format!(
            "dashboard at http://{} (signing requests to {} with your AWS credentials (SigV4, FERRY_API_AUTH=iam))",
            ui.addr, rec.url
        )
    );
    let sent = browse_through_the_proxy(&ui, &rec);
    let got = rec.requests();
    assert_forwarded_as_sent(&sent, &got, &rec.url);
    for req in &got {
        assert_signed_for_execute_api(req);
    }
    // What is forwarded is covered by the signature.
    let signed = |i: usize| parse_sigv4(&got[i]).signed_headers;
    assert!(signed(0).contains(&"accept".to_owned()), "{:?}", signed(0));
    for h in ["content-type", "origin", "sec-fetch-site"] {
        assert!(signed(5).contains(&h.to_owned()), "{h}: {:?}", signed(5));
    }
}

#[test]
#[ignore = "needs the emulators' venv (botocore): scripts/test.sh runs it"]
fn what_the_proxy_forwards_is_signed_as_botocore_signs_it() {
    venv_python();
    let rec = ok_recorder();
    let dir = tempfile::tempdir().unwrap();
    let ui = ui_iam(&rec.url, dir.path());
    browse_through_the_proxy(&ui, &rec);
    let got = rec.requests();
    let boto: Vec<_> = got.iter().map(as_botocore_would_sign).collect();
    let theirs = botocore_authorizations(&boto);
    for (req, theirs) in got.iter().zip(&theirs) {
        assert_eq!(
            req.header("authorization").unwrap(),
            theirs,
            "{} {}",
            req.method,
            req.target
        );
    }
}

#[test]
fn without_credentials_requests_go_as_they_are_and_redirects_and_headers_come_back_unchanged_but_hop_by_hop(
) {
    let rec = Recorder::start_with_headers(|req, _| Reply {
        status: 303,
        headers: vec![
            (
                "location".into(),
                format!("/runs/{RUN}?from={}", req.method),
            ),
            ("content-type".into(), "text/html; charset=utf-8".into()),
            (
                "content-security-policy".into(),
                "default-src 'self'".into(),
            ),
            ("x-hop".into(), "declared hop-by-hop below".into()),
            ("keep-alive".into(), "timeout=5".into()),
            ("set-cookie".into(), "ferry_session=x; HttpOnly".into()),
            ("connection".into(), "x-hop".into()),
        ],
        body: "see other".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let ui = Ui::start(ui_cmd(&rec.url, dir.path(), &["--port", "0"], &[]));
    assert_eq!(
        ui.banner,
        format!(
            "dashboard at http://{} (sending requests to {} without credentials)",
            ui.addr, rec.url
        )
    );
    let origin = ui.origin();
    let answer = ui.send(
        "POST",
        "/deployments/etl/nightly/run",
        &[
            ("origin", &origin),
            ("content-type", "application/x-www-form-urlencoded"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eDp5"),
            ("x-hop-in", "1"),
            ("keep-alive", "timeout=9"),
        ],
        b"parameters=%7B%7D",
    );
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(
        answer.header("location"),
        Some(&*format!("/runs/{RUN}?from=POST"))
    );
    assert_eq!(
        answer.header("content-security-policy"),
        Some("default-src 'self'")
    );
    assert_eq!(answer.body, "see other");
    for dropped in ["x-hop", "keep-alive", "set-cookie"] {
        assert_eq!(
            answer.header(dropped),
            None,
            "{dropped} passed back: {answer:?}"
        );
    }
    let got = rec.requests();
    assert_eq!(got.len(), 1, "redirect not followed: {got:?}");
    for dropped in [
        "te",
        "proxy-authorization",
        "x-hop-in",
        "keep-alive",
        "authorization",
    ] {
        assert_eq!(
            got[0].header(dropped),
            None,
            "{dropped} forwarded: {:?}",
            got[0]
        );
    }
    assert_eq!(got[0].body, b"parameters=%7B%7D");
}

#[test]
fn through_the_proxy_a_token_protected_server_answers_with_the_token_the_proxy_adds() {
    let token = "s3cret-token";
    let s = Server::start_with(&[], &[("FERRY_API_TOKEN", token)]);
    let dir = tempfile::tempdir().unwrap();
    let ui = Ui::start(ui_cmd(
        &s.url,
        dir.path(),
        &["--port", "0"],
        &[("FERRY_API_TOKEN", token)],
    ));
    assert!(
        ui.banner.ends_with(&format!(
            "(sending requests to {} with FERRY_API_TOKEN as a bearer token)",
            s.url
        )),
        "{}",
        ui.banner
    );
    // Directly, the server wants the token.
    let direct = s
        .http()
        .get(format!("{}/v1/work-queues", s.url))
        .call()
        .unwrap();
    assert_eq!(direct.status().as_u16(), 401);

    let origin = ui.origin();
    let created = ui.send(
        "POST",
        "/v1/work-queues",
        &[
            ("origin", &origin),
            ("content-type", "application/json"),
            ("authorization", "Bearer wrong-browser-token"),
            ("cookie", COOKIE),
        ],
        br#"{"name":"night","concurrency_limit":2}"#,
    );
    assert_eq!(created.status, 201, "{created:?}");
    let refused = ui.send(
        "POST",
        "/v1/work-queues",
        &[
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ],
        br#"{"name":"evil"}"#,
    );
    assert_eq!(refused.status, 403, "{refused:?}");

    let listed = ui.get("/v1/work-queues", &[("accept", "application/json")]);
    assert_eq!(listed.status, 200, "{listed:?}");
    let queues: Value = serde_json::from_str(&listed.body).unwrap();
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"night"), "{names:?}");
    assert!(!names.contains(&"evil"), "{names:?}");
    let missing = ui.get("/v1/flow-runs/not-a-run", &[]);
    assert!(
        missing.status == 400 || missing.status == 404,
        "the API's own error passes through: {missing:?}"
    );
}

/// The stylesheet's address in a page (`/assets/app.css?v=HASH`).
fn stylesheet(page: &str) -> String {
    let link = "<link rel=\"stylesheet\" href=\"";
    let start = page
        .find(link)
        .unwrap_or_else(|| panic!("no stylesheet link in {page}"))
        + link.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].replace("&amp;", "&")
}

/// Pages, an asset, the live endpoint and a form action through `ui`, with no sign-in and no
/// cookie: the proxy's credentials are the session. `queue` is a work queue of the API, `run`
/// one of its runs.
fn the_dashboard_works_through(ui: &Ui, queue: &str, run: Option<&str>) {
    let page = ui.get("/", &[("accept", "text/html"), ("cookie", COOKIE)]);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'self'")),
        "{page:?}"
    );
    assert!(page.body.contains("<h1>Overview</h1>"), "{}", page.body);
    for link in ["Overview", "Deployments", "Runs", "Work queues"] {
        assert!(page.body.contains(&format!(">{link}</a>")), "{link}");
    }
    let css = ui.get(&stylesheet(&page.body), &[]);
    assert_eq!(css.status, 200, "{css:?}");
    assert!(
        css.header("content-type")
            .is_some_and(|c| c.starts_with("text/css")),
        "{css:?}"
    );
    let queues = ui.get("/work-queues", &[]);
    assert_eq!(queues.status, 200, "{queues:?}");
    assert!(
        queues.body.contains(&format!("data-queue=\"{queue}\"")),
        "{}",
        queues.body
    );
    if let Some(run) = run {
        let page = ui.get(&format!("/runs/{run}"), &[]);
        assert_eq!(page.status, 200, "{page:?}");
        assert!(page.body.contains("id=\"run-state\""), "{}", page.body);
        let live = ui.get(&format!("/runs/{run}/live?offset=0"), &[]);
        assert_eq!(live.status, 200, "{live:?}");
        let live: Value = serde_json::from_str(&live.body).unwrap();
        assert!(live["state"].is_string(), "{live}");
    }
    // A form from another site is refused by the proxy; the dashboard's own goes through and
    // its redirect comes back as the page sent it.
    let action = format!("/work-queues/{queue}/pause");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let refused = ui.send(
        "POST",
        &action,
        &[form, ("origin", "http://evil.example")],
        b"",
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    let paused = || {
        let q = ui.get(&format!("/v1/work-queues/{queue}"), &[]);
        assert_eq!(q.status, 200, "{q:?}");
        serde_json::from_str::<Value>(&q.body).unwrap()["paused"] == true
    };
    assert!(!paused(), "the refused form changed nothing");
    let origin = ui.origin();
    let done = ui.send("POST", &action, &[form, ("origin", &origin)], b"");
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(done.header("location"), Some("/work-queues"));
    assert!(paused());
}

#[test]
fn through_the_proxy_the_pages_of_a_token_protected_server_load_without_signing_in() {
    let token = "s3cret-token";
    let s = Server::start_with(&["--tick-interval", "200ms"], &[("FERRY_API_TOKEN", token)]);
    let proj = s.path("proj");
    write_project(&proj, &[("flow.sh", "#!/bin/sh\necho hi\n")]);
    let proj = proj.to_string_lossy().into_owned();
    s.ok(&[
        "deployment",
        "build",
        "flow.sh",
        "-n",
        "nightly",
        "--path",
        &proj,
        "-o",
        "nightly.yaml",
        "-a",
    ]);
    s.ok(&["deployment", "run", "flow/nightly"]);
    let runs = s.json(&["flow-run", "ls", "--deployment", "flow/nightly"]);
    let run = runs[0]["id"].as_str().unwrap().to_owned();
    // Without the proxy, a browser is sent to sign in.
    let direct = send(s.url.trim_start_matches("http://"), "GET", "/", &[], b"");
    assert_eq!(direct.status, 303, "{direct:?}");
    assert_eq!(direct.header("location"), Some("/sign-in?next=%2F"));

    let dir = tempfile::tempdir().unwrap();
    let ui = Ui::start(ui_cmd(
        &s.url,
        dir.path(),
        &["--port", "0"],
        &[("FERRY_API_TOKEN", token)],
    ));
    the_dashboard_works_through(&ui, "default", Some(&run));
}

#[test]
fn a_foreign_host_or_a_change_from_another_origin_is_refused_and_reaches_nothing() {
    let rec = ok_recorder();
    let dir = tempfile::tempdir().unwrap();
    let ui = Ui::start(ui_cmd(&rec.url, dir.path(), &["--port", "0"], &[]));
    let port = ui.port().to_owned();
    let evil_host = format!("evil.example:{port}");
    let other_port = format!("127.0.0.1:{}", port.parse::<u32>().unwrap() + 1);
    for host in [
        evil_host.as_str(),
        "127.0.0.1",
        other_port.as_str(),
        "localhost",
    ] {
        let a = ui.get("/", &[("host", host)]);
        assert_eq!(a.status, 403, "Host {host}: {a:?}");
        assert!(
            a.body.contains("Host")
                && a.body.contains("DNS rebinding")
                && a.body.contains(&ui.addr),
            "{}",
            a.body
        );
    }
    // An absolute request target naming another host, with the proxy's own Host.
    let a = ui.get("http://evil.example/v1/work-queues", &[]);
    assert_eq!(a.status, 403, "{a:?}");

    let cross = [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![],
    ];
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        for headers in &cross {
            let mut headers = headers.clone();
            headers.push(("content-type", "application/x-www-form-urlencoded"));
            let a = ui.send(method, &format!("/runs/{RUN}/cancel"), &headers, b"x=1");
            assert_eq!(a.status, 403, "{method} {headers:?}: {a:?}");
            assert!(a.body.contains("own pages"), "{}", a.body);
        }
    }
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());

    // The proxy's own names pass.
    let localhost = format!("localhost:{port}");
    assert_eq!(ui.get("/", &[("host", &localhost)]).status, 200);
    let local_origin = format!("http://{localhost}");
    let a = ui.send(
        "POST",
        "/x",
        &[("host", &localhost), ("origin", &local_origin)],
        b"",
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(rec.requests().len(), 2);
}

#[test]
fn a_body_over_the_limit_is_refused_with_413_and_reaches_nothing() {
    let rec = ok_recorder();
    let dir = tempfile::tempdir().unwrap();
    let ui = Ui::start(ui_cmd(&rec.url, dir.path(), &["--port", "0"], &[]));
    let limit = 10 * 1024 * 1024;
    // Declared too large: refused on the header alone.
    let mut conn = TcpStream::connect(&ui.addr).unwrap();
    write!(
        conn,
        "PUT /v1/bundles/ab HTTP/1.1\r\nhost: {}\r\nsec-fetch-site: same-origin\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        ui.addr,
        limit + 1
    )
    .unwrap();
    let a = read_answer(conn);
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("10 MiB"), "{}", a.body);
    // (A body without a declared length is cut at the limit too: the unit test of
    // cli/src/commands/ui.rs `read_body`.)
    // Exactly at the limit: forwarded.
    let body = vec![b'y'; limit];
    let a = ui.send(
        "PUT",
        "/v1/bundles/ab",
        &[("sec-fetch-site", "same-origin")],
        &body,
    );
    assert_eq!(a.status, 200, "{a:?}");
    let got = rec.requests();
    assert_eq!(got.len(), 1, "only the body at the limit arrives");
    assert_eq!(got[0].body.len(), limit);
}

#[test]
fn an_unreachable_api_is_a_502_page_naming_ferry_api_url() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let ui = Ui::start(ui_cmd(&api, dir.path(), &["--port", "0"], &[]));
    let a = ui.get("/runs", &[]);
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        a.body
            .contains(&format!("FERRY_API_URL=<code>{api}</code>")),
        "{}",
        a.body
    );
}

#[test]
fn a_taken_port_a_non_loopback_address_or_missing_aws_credentials_stop_it_at_start() {
    let rec = ok_recorder();
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let expect_failure = |mut cmd: Command, needles: &[&str]| {
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    };
    expect_failure(
        ui_cmd(&rec.url, dir.path(), &["--port", &port], &[]),
        &[&format!("--port {port}"), "choose another port"],
    );
    expect_failure(
        ui_cmd(
            &rec.url,
            dir.path(),
            &["--port", "0", "--bind", "0.0.0.0"],
            &[],
        ),
        &["--bind 0.0.0.0", "loopback"],
    );
    let mut no_credentials = ferry_iam_cmd(&rec.url, dir.path(), &["ui", "--port", "0"]);
    no_credentials
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    expect_failure(
        no_credentials,
        &["no AWS credentials found", "AWS_ACCESS_KEY_ID"],
    );
    assert!(rec.requests().is_empty());
    drop(taken);
}

/// A fresh table and bucket, created by `ferry aws bootstrap`.
fn fresh_storage() -> (String, String) {
    require_emulators();
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (table, bucket) = (format!("ferry-ui-{id}"), format!("ferry-ui-{id}"));
    let out = Command::new(ferry_bin())
        .args(["aws", "bootstrap"])
        .env("FERRY_BACKEND", "aws")
        .env("FERRY_TABLE", &table)
        .env("FERRY_BUCKET", &bucket)
        .output()
        .expect("running ferry aws bootstrap");
    assert!(
        out.status.success(),
        "bootstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (table, bucket)
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn on_aws_the_proxy_in_front_of_the_api_lambda_serves_v1_answers_and_the_pages() {
    let (table, bucket) = fresh_storage();
    let api = LambdaFunction::start(
        FunctionConfig::new("ferry-api", function_binary("ferry-api-lambda"))
            .aws_env_from_test()
            .env("FERRY_TABLE", &table)
            .env("FERRY_BUCKET", &bucket),
    );
    let gw = api.api_gateway();
    let dir = tempfile::tempdir().unwrap();
    // The emulators' credentials and region, as the user's AWS configuration would give them.
    let mut env = vec![
        ("FERRY_API_AUTH", "iam"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let aws: Vec<(String, String)> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the emulators' env")),
            )
        })
        .collect();
    env.extend(aws.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let ui = Ui::start(ui_cmd(&gw.url, dir.path(), &["--port", "0"], &env));
    assert!(ui.banner.contains("signing requests to"), "{}", ui.banner);

    let origin = ui.origin();
    let created = ui.send(
        "POST",
        "/v1/work-queues",
        &[
            ("origin", &origin),
            ("content-type", "application/json"),
            ("cookie", COOKIE),
        ],
        br#"{"name":"night","concurrency_limit":2}"#,
    );
    assert_eq!(created.status, 201, "{created:?}\n{}", api.logs());
    let listed = ui.get("/v1/work-queues", &[("accept", "application/json")]);
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(listed.body.contains("\"night\""), "{}", listed.body);
    let health = ui.get("/v1/health", &[]);
    assert_eq!(health.status, 200, "{health:?}");
    let refused = ui.send(
        "POST",
        "/v1/work-queues",
        &[("origin", "http://evil.example")],
        b"{}",
    );
    assert_eq!(refused.status, 403);
    let reached: Vec<String> = gw
        .requests()
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert_eq!(
        reached,
        [
            "POST /v1/work-queues 201",
            "GET /v1/work-queues 200",
            "GET /v1/health 200"
        ],
        "the refused POST reached nothing"
    );
    the_dashboard_works_through(&ui, "night", None);
}
