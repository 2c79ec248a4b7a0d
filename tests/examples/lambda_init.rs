//! Init time of Lambda function binaries, measured locally behind the project's Runtime API
//! emulator (`ferry_tests::lambda_rt`): process start → the runtime's first `next` request,
//! what Lambda reports as "Init Duration" (without the sandbox's own start). Each binary is
//! started RUNS times; prints one tab-separated line per binary: path, median and min/max in
//! milliseconds. The functions only read their configuration and build their SDK clients at
//! init (no network call), so no emulator is needed. Run by `scripts/package-functions.sh
//! --measure`.
//!
//! `cargo run -p ferry-tests --example lambda_init -- [--runs N] BINARY...`

use std::time::Duration;

use ferry_tests::lambda_rt::{FunctionConfig, LambdaFunction};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut runs = 5usize;
    let mut binaries = Vec::new();
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--runs N: a number");
        } else {
            binaries.push(a);
        }
    }
    assert!(
        !binaries.is_empty(),
        "usage: lambda_init [--runs N] BINARY..."
    );
    for binary in &binaries {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let f = LambdaFunction::start(
                    FunctionConfig::new("ferry-init-probe", binary)
                        .env("FERRY_TABLE", "ferry-init-probe")
                        .env("FERRY_BUCKET", "ferry-init-probe")
                        .env("AWS_ACCESS_KEY_ID", "test")
                        .env("AWS_SECRET_ACCESS_KEY", "test")
                        .env("AWS_REGION", "us-east-1"),
                );
                f.wait_ready(Duration::from_secs(30))
                    .unwrap_or_else(|e| panic!("{binary}: {e}"))
            })
            .collect();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{binary}\t{:.1}\t{:.1}\t{:.1}",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
}
