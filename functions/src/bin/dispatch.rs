//! The dispatch Lambda, on the table's DynamoDB stream (with `ReportBatchItemFailures`):
//! launches each run of a launched deployment that became due, as its ECS task.

use ferry_aws::stream::StreamEvent;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_functions::init_tracing();
    let ferry = ferry_functions::ferry_from_env().await?;
    let ferry = &ferry;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            ferry_functions::dispatch_handler(ferry, event).await
        },
    ))
    .await
}
