//! Retrying writes: the one backoff of the crate, and the loop every read-modify-write use case
//! runs in ([`retry_on_conflict`]). The agent's run writes have their own loop
//! (`Ferry::write_transition`), which also retries a busy store.

use std::future::Future;

use ferry_core::ports::StoreError;

use crate::AppError;

/// How many times a read-modify-write use case re-reads and retries after losing its
/// conditional write (with a short random pause in between, so a busy run's heartbeats do not
/// starve a cancel).
pub(crate) const CONFLICT_RETRIES: usize = 25;

/// Longest pause after a lost race: the other writer is done, the item can be read again soon.
pub(crate) const CONFLICT_PAUSE_MAX_MS: u64 = 50;

/// Longest pause after a write the store refused as retryable (throttled, unavailable): it
/// needs time to recover.
pub(crate) const UNAVAILABLE_PAUSE_MAX_MS: u64 = 2_000;

/// One try of a read-modify-write.
pub(crate) enum Attempt<T> {
    /// Finished: written, or nothing (more) to write.
    Done(T),
    /// Another writer changed the item between the read and the conditional write: try again.
    Lost,
}

/// A conditional write's result: `Ok(true)` written, `Ok(false)` lost to another writer; any
/// other store failure is returned.
pub(crate) fn landed(written: Result<(), StoreError>) -> Result<bool, AppError> {
    match written {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Runs `attempt` (read, decide, conditional write) until it is [`Attempt::Done`], pausing
/// between tries. An error ends it at once; after [`CONFLICT_RETRIES`] lost races it fails with
/// a conflict naming `subject` (`work queue "q"`, `run <id>`).
pub(crate) async fn retry_on_conflict<T, F, Fut>(
    subject: String,
    mut attempt: F,
) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, AppError>>,
{
    for n in 0..CONFLICT_RETRIES {
        match attempt().await? {
            Attempt::Done(v) => return Ok(v),
            Attempt::Lost => backoff(n, CONFLICT_PAUSE_MAX_MS).await,
        }
    }
    Err(AppError::Conflict(format!(
        "{subject} is changing too often; retry"
    )))
}

/// Sleeps before try `attempt + 1` (`attempt` counts from 0): a random pause ("full jitter")
/// under a bound that doubles from 50 ms with each attempt up to `max_ms`, so writers that
/// collided do not collide again in step.
pub(crate) async fn backoff(attempt: usize, max_ms: u64) {
    let random = uuid::Uuid::new_v4().as_bytes()[0];
    let ms = pause_ms(attempt, max_ms, random);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The pause of [`backoff`] for a random byte: at least 10 ms, at most the attempt's bound.
fn pause_ms(attempt: usize, max_ms: u64, random: u8) -> u64 {
    let bound = 50u64.saturating_mul(1 << attempt.min(6)).min(max_ms);
    (u64::from(random) * bound / 255).max(10)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_pause_bound_doubles_from_50_ms_up_to_the_cap() {
        let bounds: Vec<u64> = (0..9)
            .map(|a| pause_ms(a, UNAVAILABLE_PAUSE_MAX_MS, u8::MAX))
            .collect();
        assert_eq!(bounds, [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(pause_ms(0, CONFLICT_PAUSE_MAX_MS, u8::MAX), 50);
        assert_eq!(pause_ms(20, CONFLICT_PAUSE_MAX_MS, u8::MAX), 50);
        assert_eq!(
            pause_ms(usize::MAX, UNAVAILABLE_PAUSE_MAX_MS, u8::MAX),
            2000
        );
    }

    #[test]
    fn the_pause_is_never_shorter_than_10_ms() {
        for a in 0..8 {
            assert_eq!(pause_ms(a, CONFLICT_PAUSE_MAX_MS, 0), 10);
            assert_eq!(pause_ms(a, UNAVAILABLE_PAUSE_MAX_MS, 0), 10);
        }
    }

    #[tokio::test]
    async fn retry_on_conflict_tries_again_after_a_lost_race() {
        let tries = AtomicUsize::new(0);
        let v = retry_on_conflict("thing".into(), || async {
            Ok(match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Attempt::Lost,
                n => Attempt::Done(n),
            })
        })
        .await
        .unwrap();
        assert_eq!(v, 2);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retry_on_conflict_gives_up_naming_the_subject_after_its_retries() {
        let tries = AtomicUsize::new(0);
        let e = retry_on_conflict::<(), _, _>("work queue \"q\"".into(), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Ok(Attempt::Lost)
        })
        .await
        .unwrap_err();
        assert_eq!(tries.load(Ordering::SeqCst), CONFLICT_RETRIES);
        assert!(
            matches!(&e, AppError::Conflict(m) if m == "work queue \"q\" is changing too often; retry"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn retry_on_conflict_returns_an_error_at_once() {
        let tries = AtomicUsize::new(0);
        let e = retry_on_conflict::<(), _, _>("thing".into(), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(AppError::not_found("flow run", "x"))
        })
        .await
        .unwrap_err();
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        assert!(matches!(e, AppError::NotFound { .. }), "{e}");
    }

    #[test]
    fn landed_tells_a_lost_race_from_a_failure() {
        assert!(landed(Ok(())).unwrap());
        assert!(!landed(Err(StoreError::Conflict("v".into()))).unwrap());
        let corrupt = StoreError::Corrupt {
            key: "k".into(),
            message: "m".into(),
        };
        assert!(matches!(landed(Err(corrupt)), Err(AppError::Store(_))));
    }
}
