//! The tick Lambda, on an EventBridge schedule (every minute).

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_functions::init_tracing();
    let ferry = ferry_functions::ferry_from_env().await?;
    let ferry = &ferry;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            ferry_functions::tick_handler(ferry, event).await
        },
    ))
    .await
}
