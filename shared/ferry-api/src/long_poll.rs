//! Long polls of `POST /v1/agents/{name}/claims`: a claim that finds nothing may wait (up to
//! [`MAX_WAIT_SECONDS`]) for work before it answers, so an agent that talks to the API starts
//! a new run at once instead of at its next poll.
//!
//! A waiting claim claims once more and answers when
//! - something in this process may have made a run claimable ([`ClaimWaits::wake_all`]): a
//!   run created through this API, a tick that wrote runs or reaped leases, an agent that
//!   finished or released a run here, a queue updated (resumed, its limit raised) or a
//!   deployment resumed here. Every waiting claim wakes, not one: they all race for the
//!   run through the same conditional claim, so it is still claimed exactly once;
//! - the earliest waiting run of the agent's queues comes within the agent's look-ahead
//!   ([`next_claimable_in`]: read from the store when the wait starts);
//! - or the wait ends (the agent then gets an empty list and asks again).
//!
//! A claim that waits is a request held open. Where that costs money — the API Lambda is
//! billed for every millisecond a request is held, so twenty idle agents long-polling 20 s
//! each keep twenty Lambda invocations running around the clock, and it sees no run created
//! by another invocation anyway — the API state says so ([`ClaimWaits::answer_at_once`]):
//! the wait is clamped to 0 and the answer says so in its [`WAIT_HEADER`], so the agent goes
//! back to polling every `--poll-interval`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_app::{AppError, Ferry};
use ferry_core::QueueName;
use tokio::sync::watch;

/// Longest wait a claim may ask for, in seconds.
pub const MAX_WAIT_SECONDS: f64 = 20.0;

/// Header of a claim's answer: the wait the server granted, in seconds (the one asked for,
/// or 0 where the server answers at once). An agent that asked to wait and reads 0 polls.
pub const WAIT_HEADER: &str = "ferry-wait-seconds";

/// Most waiting runs of a queue read to find the next one that comes within the look-ahead
/// (runs already within it that the claim left, e.g. at a concurrency limit, come first).
const NEXT_DUE_PAGE: usize = 100;

#[derive(Debug, Clone, Copy, Default)]
struct Signal {
    generation: u64,
    closing: bool,
}

/// How claims that find nothing wait in this process: the longest wait granted and the
/// signal that wakes every waiting claim. Clones share the signal.
#[derive(Debug, Clone)]
pub struct ClaimWaits {
    max_wait: Duration,
    signal: Arc<watch::Sender<Signal>>,
}

/// Why a waiting claim stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Woken ([`ClaimWaits::wake_all`]), or a waiting run came within the look-ahead: claim again.
    Woken,
    /// The wait is over: claim again.
    TimedOut,
    /// The server is shutting down ([`ClaimWaits::close`]): answer without claiming.
    Closing,
}

impl ClaimWaits {
    /// Claims wait up to [`MAX_WAIT_SECONDS`] (`ferry server`, `ferry dev`: this process sees
    /// the runs created through it).
    pub fn wait_in_process() -> Self {
        Self::with_max_wait(Duration::from_secs_f64(MAX_WAIT_SECONDS))
    }

    /// Claims never wait (the API Lambda: a held request is billed while it waits, and no
    /// other invocation's runs wake it).
    pub fn answer_at_once() -> Self {
        Self::with_max_wait(Duration::ZERO)
    }

    fn with_max_wait(max_wait: Duration) -> Self {
        let (signal, _) = watch::channel(Signal::default());
        Self {
            max_wait,
            signal: Arc::new(signal),
        }
    }

    /// The wait granted to a claim that asked for `asked`.
    pub fn granted(&self, asked: Duration) -> Duration {
        asked.min(self.max_wait)
    }

    /// Wakes every claim waiting now, and every claim between its empty claim and its wait
    /// (they subscribed before claiming): a run may have become claimable.
    pub fn wake_all(&self) {
        self.signal
            .send_modify(|s| s.generation = s.generation.wrapping_add(1));
    }

    /// The server is stopping: waiting claims answer at once (graceful shutdown waits for
    /// every request), and later ones do not wait.
    pub fn close(&self) {
        self.signal.send_modify(|s| s.closing = true);
    }

    /// A ticket taken before the claim: a wake-up after it is never lost.
    pub(crate) fn ticket(&self) -> WaitTicket {
        WaitTicket(self.signal.subscribe())
    }
}

/// A waiting claim's view of the wake-up signal, taken before it claimed.
pub(crate) struct WaitTicket(watch::Receiver<Signal>);

impl WaitTicket {
    /// Waits until a wake-up since the ticket was taken, `until` (a waiting run comes within
    /// the look-ahead), or `deadline`, whichever is first.
    pub(crate) async fn wait(
        mut self,
        until: Option<tokio::time::Instant>,
        deadline: tokio::time::Instant,
    ) -> WaitEnd {
        if self.0.borrow().closing {
            return WaitEnd::Closing;
        }
        let until = until.map_or(deadline, |u| u.min(deadline));
        tokio::select! {
            changed = self.0.changed() => match changed {
                Ok(()) if self.0.borrow().closing => WaitEnd::Closing,
                Ok(()) => WaitEnd::Woken,
                // The signal is gone with the server's state: nothing will wake this claim.
                Err(_) => WaitEnd::Closing,
            },
            _ = tokio::time::sleep_until(until) => {
                if until < deadline { WaitEnd::Woken } else { WaitEnd::TimedOut }
            }
        }
    }
}

/// How long until the earliest waiting run of `queues` that a claim could not take yet may be
/// claimed: when it comes within the look-ahead (`prefetch`; none for a queue with a
/// concurrency limit, as in [`Ferry::claim_batch`]), or, for a run already within it, when it
/// is due (a run of a limited deployment is never claimed ahead). `None` when none does within
/// `within`. Runs already due are skipped: the claim just left them (a limit reached, a paused
/// deployment), and what frees them (a run finishing here) wakes the claim.
pub async fn next_claimable_in(
    ferry: &Ferry,
    queues: &[QueueName],
    prefetch: Duration,
    within: Duration,
) -> Result<Option<Duration>, AppError> {
    let now = ferry.now();
    let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
    let mut earliest: Option<DateTime<Utc>> = None;
    for q in ferry.queues_to_serve(queues).await? {
        let ahead = if q.concurrency_limit.is_some() {
            chrono::Duration::zero()
        } else {
            chrono::Duration::from_std(prefetch).unwrap_or(chrono::Duration::MAX)
        };
        let horizon = now
            .checked_add_signed(ahead)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let until = horizon
            .checked_add_signed(within)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let page = ferry
            .claimable_runs(&q.name, until, None, NEXT_DUE_PAGE)
            .await?;
        let next = page
            .iter()
            .filter_map(|r| {
                if r.scheduled_time > horizon {
                    // Claimable ahead once within the look-ahead.
                    Some(r.scheduled_time - ahead)
                } else if r.scheduled_time > now {
                    // Within it but left by the claim: a limited deployment's run is claimed
                    // only when due.
                    Some(r.scheduled_time)
                } else {
                    None
                }
            })
            .min();
        if let Some(at) = next {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    Ok(earliest.map(|at| (at - now).to_std().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later(ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_wake_up_between_the_ticket_and_the_wait_is_not_lost() {
        let waits = ClaimWaits::wait_in_process();
        let ticket = waits.ticket();
        waits.wake_all();
        let started = std::time::Instant::now();
        assert_eq!(ticket.wait(None, later(5_000)).await, WaitEnd::Woken);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn every_waiting_claim_wakes_not_one() {
        let waits = ClaimWaits::wait_in_process();
        let tickets: Vec<_> = (0..5).map(|_| waits.ticket()).collect();
        let handles: Vec<_> = tickets
            .into_iter()
            .map(|t| tokio::spawn(t.wait(None, later(5_000))))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        waits.wake_all();
        for h in handles {
            assert_eq!(h.await.unwrap(), WaitEnd::Woken);
        }
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline_or_earlier_when_a_run_comes_due() {
        let waits = ClaimWaits::wait_in_process();
        assert_eq!(
            waits.ticket().wait(None, later(50)).await,
            WaitEnd::TimedOut
        );
        assert_eq!(
            waits.ticket().wait(Some(later(50)), later(5_000)).await,
            WaitEnd::Woken
        );
    }

    #[tokio::test]
    async fn a_closing_server_ends_waits_at_once() {
        let waits = ClaimWaits::wait_in_process();
        let ticket = waits.ticket();
        let waiting = tokio::spawn(ticket.wait(None, later(5_000)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        waits.close();
        assert_eq!(waiting.await.unwrap(), WaitEnd::Closing);
        assert_eq!(
            waits.ticket().wait(None, later(5_000)).await,
            WaitEnd::Closing
        );
    }

    #[test]
    fn the_lambda_grants_no_wait_and_a_server_up_to_what_was_asked() {
        let asked = Duration::from_secs(7);
        assert_eq!(ClaimWaits::answer_at_once().granted(asked), Duration::ZERO);
        assert_eq!(ClaimWaits::wait_in_process().granted(asked), asked);
    }
}
