//! The API Lambda: the same `/v1` router `ferry server start` serves, behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ferry_functions::init_tracing();
    let ferry = ferry_functions::ferry_from_env().await?;
    // A table made by CloudFormation starts empty: `default` exists from the first request.
    ferry.ensure_default_queue().await?;
    let token = std::env::var("FERRY_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let state = ferry_api::ApiState {
        ferry,
        token: token.map(Into::into),
        backend: ferry_api::Backend::Aws,
        // A Lambda is billed while a request waits, and no other invocation's runs wake it:
        // claims answer at once and agents poll (see ferry_api::long_poll).
        claim_waits: ferry_api::ClaimWaits::answer_at_once(),
    };
    lambda_http::run(ferry_api::router(state)).await
}
