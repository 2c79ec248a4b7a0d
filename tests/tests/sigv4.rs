//! `FERRY_API_AUTH=iam`: the CLI's SigV4 signatures, checked against botocore's `SigV4Auth`
//! (an independent signer) on the same requests, and on what the real `ferry` binary sends to a
//! local listener that records every request (helpers in tests/src/sigv4_check.rs).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use ferry_cli::sigv4::{self, Credentials};
use ferry_tests::sigv4_check::{
    as_botocore_would_sign, assert_signed_for_execute_api, botocore_authorizations, ferry_iam_cmd,
    parse_sigv4, venv_python, BotoRequest, Recorded, Recorder, ACCESS_KEY, REGION, SECRET_KEY,
    SESSION_TOKEN,
};
use ferry_tests::{write_project, Server};
use serde_json::json;

fn credentials(token: Option<&str>) -> Credentials {
    Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        token.map(str::to_owned),
        None,
        "test",
    )
}

/// (method, url, headers, body, session token, region)
type Case<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    Option<&'a str>,
    &'a str,
);

#[test]
#[ignore = "needs the emulators' venv (botocore): scripts/test.sh runs it"]
fn the_cli_signature_is_byte_identical_to_botocores_on_the_same_requests() {
    let python = venv_python();
    // 2026-12-01T13:45:00Z
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_132_700);
    let amz_date = "20261201T134500Z";
    let api = "https://abc123.execute-api.eu-west-1.amazonaws.com";
    let gzip: Vec<u8> = (0..=255).chain(0..=255).collect();
    let run = "0193a0c4-5c1e-7e2a-9d7b-3f1c2e4a5b6c";
    let cases: Vec<Case> = vec![
        (
            "GET",
            format!("{api}/v1/flow-runs?limit=20&deployment=etl%2Fnightly&state=scheduled%2Clate&work_queue=night%20shift"),
            vec![],
            vec![],
            None,
            "eu-west-1",
        ),
        (
            "PUT",
            format!("{api}/v1/deployments/etl/nightly"),
            vec![("content-type", "application/json")],
            br#"{"flow":"etl","name":"nightly","entrypoint":"flows/etl.py:main","parameters":{"day":"2026-12-01"}}"#.to_vec(),
            None,
            "eu-west-1",
        ),
        (
            "POST",
            format!("{api}/v1/flow-runs/{run}/cancel"),
            vec![("content-type", "application/json")],
            b"{}".to_vec(),
            Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="),
            "eu-west-1",
        ),
        (
            "GET",
            format!("{api}/v1/flow-runs/{run}/logs?offset=0&limit=5000"),
            vec![],
            vec![],
            None,
            "eu-west-1",
        ),
        (
            "HEAD",
            format!("{api}/v1/bundles/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            vec![],
            vec![],
            None,
            "eu-west-1",
        ),
        (
            "PUT",
            "http://127.0.0.1:4300/v1/bundles/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            vec![("content-type", "application/gzip")],
            gzip,
            None,
            "us-east-1",
        ),
        (
            "PATCH",
            format!("{api}/v1/work-queues/night%20shift%2Fa~b"),
            vec![("content-type", "application/json")],
            br#"{"paused":true}"#.to_vec(),
            None,
            "eu-west-1",
        ),
        (
            "DELETE",
            format!("{api}/v1/infra/ecs/fargate-small"),
            vec![],
            vec![],
            None,
            "eu-west-1",
        ),
    ];
    let mut ours = Vec::new();
    let mut boto = Vec::new();
    for (method, url, headers, body, token, region) in &cases {
        let signed = sigv4::sign(
            &sigv4::Request {
                method,
                url,
                headers,
                body: Some(body),
            },
            &credentials(*token),
            region,
            time,
        )
        .unwrap();
        let get = |name: &str| {
            signed
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("x-amz-date").as_deref(), Some(amz_date), "{url}");
        assert_eq!(get("x-amz-security-token").as_deref(), *token, "{url}");
        ours.push(get("authorization").expect("an authorization header"));
        boto.push(BotoRequest {
            method: method.to_string(),
            url: url.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.clone(),
            token: token.map(str::to_owned),
            region: region.to_string(),
            amz_date: amz_date.to_owned(),
        });
    }
    let theirs = botocore_authorizations(&boto);
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(
            ours,
            theirs,
            "{} {} (botocore from {})",
            case.0,
            case.1,
            python.display()
        );
    }
}

/// Runs the real `ferry` against `api` with FERRY_API_AUTH=iam and fixed credentials from the
/// environment; nothing from the machine's AWS configuration leaks in.
fn ferry_iam(api: &str, dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    ferry_iam_cmd(api, dir, args)
        .envs(extra_env.iter().copied())
        .output()
        .expect("running ferry")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn flow_run_ls_with_iam_auth_sends_a_sigv4_signature_for_execute_api() {
    let rec = Recorder::start(|_, _| (200, "[]".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let out = ferry_iam(
        &rec.url,
        dir.path(),
        &[
            "flow-run",
            "ls",
            "--deployment",
            "etl/nightly",
            "--state",
            "scheduled,late",
            "-q",
            "night shift",
        ],
        &[],
    );
    assert_ok(&out, "ferry flow-run ls");
    let reqs = rec.requests();
    // What happened, then the next few scheduled: two requests, each signed.
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[0].target,
        "/v1/flow-runs?limit=20&deployment=etl%2Fnightly&state=scheduled%2Clate&work_queue=night%20shift&view=recent"
    );
    assert_eq!(
        reqs[1].target,
        "/v1/flow-runs?limit=3&deployment=etl%2Fnightly&state=scheduled%2Clate&work_queue=night%20shift&view=upcoming"
    );
    for req in &reqs {
        assert_signed_for_execute_api(req);
    }
}

#[test]
fn an_unknown_auth_mode_or_iam_with_a_token_is_refused_before_any_request() {
    let rec = Recorder::start(|_, _| (200, "[]".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let unknown = ferry_iam(
        &rec.url,
        dir.path(),
        &["flow-run", "ls"],
        &[("FERRY_API_AUTH", "sigv4")],
    );
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{err}");
    assert!(
        err.contains("FERRY_API_AUTH=\"sigv4\"")
            && err.contains("`token`")
            && err.contains("`iam`"),
        "{err}"
    );
    let both = ferry_iam(
        &rec.url,
        dir.path(),
        &["flow-run", "ls"],
        &[("FERRY_API_TOKEN", "secret")],
    );
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success(), "{err}");
    assert!(
        err.contains("FERRY_API_AUTH=iam") && err.contains("FERRY_API_TOKEN"),
        "{err}"
    );
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());
}

#[test]
fn iam_auth_without_a_region_or_credentials_says_where_to_set_them() {
    let rec = Recorder::start(|_, _| (200, "[]".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let no_region = ferry_iam_cmd(&rec.url, dir.path(), &["flow-run", "ls"])
        .env_remove("AWS_REGION")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&no_region.stderr);
    assert!(!no_region.status.success(), "{err}");
    assert!(
        err.contains("needs the API's region") && err.contains("AWS_REGION"),
        "{err}"
    );
    let no_credentials = ferry_iam_cmd(&rec.url, dir.path(), &["flow-run", "ls"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&no_credentials.stderr);
    assert!(!no_credentials.status.success(), "{err}");
    assert!(
        err.contains("no AWS credentials found") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());
}

/// `deployment build` (offline) then `deployment apply` against a listener that plays the
/// API: `presigned` hands out an upload URL (AWS mode), otherwise the bytes go to the API
/// (embedded mode). The recorder refuses the deployment itself: its 4th request.
fn build_against_recorder(presigned: bool) -> Vec<Recorded> {
    let rec = Recorder::start(
        move |req, base| match (req.method.as_str(), req.target.as_str()) {
            ("HEAD", t) if t.starts_with("/v1/bundles/") => (404, String::new()),
            ("POST", t) if t.ends_with("/upload-url") => {
                let target = presigned.then(|| {
                json!({
                    "url": format!("{base}/presigned/bundle.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc"),
                    "method": "PUT",
                    "headers": [["content-type", "application/gzip"]],
                })
            });
                (200, json!({ "target": target }).to_string())
            }
            ("PUT", "/v1/deployments") => (
                400,
                json!({"message": "refused by the recorder"}).to_string(),
            ),
            ("PUT", _) => (200, "{}".to_owned()),
            _ => (
                500,
                json!({"message": "not played by the recorder"}).to_string(),
            ),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    write_project(&proj, &[("flow.sh", "#!/bin/sh\necho hi\n")]);
    let out = ferry_iam(
        &rec.url,
        dir.path(),
        &[
            "deployment",
            "build",
            "flow.sh",
            "-n",
            "nightly",
            "--path",
            proj.to_str().unwrap(),
            "-o",
            "nightly.yaml",
        ],
        &[],
    );
    assert_ok(&out, "ferry deployment build");
    assert!(rec.requests().is_empty(), "build alone sends nothing");
    let out = ferry_iam(
        &rec.url,
        dir.path(),
        &["deployment", "apply", "nightly.yaml"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused by the recorder"), "{err}");
    let reqs = rec.requests();
    let summary: Vec<_> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(reqs.len(), 4, "{summary:?}");
    assert_eq!(summary[3], "PUT /v1/deployments", "{summary:?}");
    reqs
}

#[test]
#[ignore = "needs the emulators' venv (botocore): scripts/test.sh runs it"]
fn what_the_cli_sends_is_signed_as_botocore_signs_it_and_the_presigned_upload_is_left_alone() {
    venv_python();
    let mut to_check = Vec::new();

    let rec = Recorder::start(|_, _| (200, "[]".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let out = ferry_iam(
        &rec.url,
        dir.path(),
        &[
            "flow-run",
            "ls",
            "--deployment",
            "etl/nightly",
            "-q",
            "night shift",
        ],
        &[],
    );
    assert_ok(&out, "ferry flow-run ls");
    to_check.extend(rec.requests());

    // AWS mode: HEAD and POST to the API are signed; the PUT to the presigned URL carries the
    // URL's own signature only.
    let aws = build_against_recorder(true);
    assert_eq!(aws[0].method, "HEAD");
    assert_eq!(aws[1].method, "POST");
    assert_eq!(aws[1].body, b"{}");
    let upload = &aws[2];
    assert!(
        upload.target.starts_with("/presigned/bundle.tar.gz?"),
        "{}",
        upload.target
    );
    for h in ["authorization", "x-amz-date", "x-amz-security-token"] {
        assert_eq!(upload.header(h), None, "{h} on the presigned upload");
    }
    assert!(!upload.body.is_empty());
    to_check.extend(aws[..2].iter().cloned());

    // Embedded mode: the bundle's bytes go to the API, signed with their hash.
    let embedded = build_against_recorder(false);
    let put = &embedded[2];
    assert_eq!(put.method, "PUT");
    assert!(put.target.starts_with("/v1/bundles/"), "{}", put.target);
    assert_eq!(put.header("content-type"), Some("application/gzip"));
    assert!(parse_sigv4(put)
        .signed_headers
        .contains(&"content-type".to_owned()));
    to_check.extend(embedded);

    for req in &to_check {
        assert_signed_for_execute_api(req);
    }
    let boto: Vec<_> = to_check.iter().map(as_botocore_would_sign).collect();
    let theirs = botocore_authorizations(&boto);
    for (req, theirs) in to_check.iter().zip(&theirs) {
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
fn with_iam_auth_the_cli_builds_runs_and_lists_against_a_server_that_does_not_check_it() {
    // `ferry server start` on loopback without a token lets the SigV4 Authorization through,
    // so the whole client path (signing, bodies, response decoding) runs in IAM mode.
    let s = Server::start_with(
        &["--tick-interval", "200ms"],
        &[
            ("FERRY_API_AUTH", "iam"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
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
    let deployments = s.json(&["deployment", "ls"]);
    let deployments = deployments.as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    let id = deployments[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "flow/nightly");
    s.ok(&["deployment", "run", &id]);
    let runs = s.json(&["flow-run", "ls", "--deployment", &id]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}
