//! The one conformance suite every adapter of the storage ports must pass (embedded and AWS
//! alike). Each check takes a fresh, empty store.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry_core::deployment::Deployment;
use ferry_core::ids::{DeploymentId, RunId};
use ferry_core::ports::{
    ClaimOutcome, DueCounts, InsertOutcome, RunCursor, RunFilter, RunWindow, SlotTake, Store,
    StoreError,
};
use ferry_core::run::{FlowRun, RunLease};
use ferry_core::slot::SlotKey;
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::{DeploymentSpec, WorkQueue};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn queue(name: &str) -> SlotKey {
    SlotKey::Queue(ferry_core::testkit::queue(name))
}

fn dep_id() -> DeploymentId {
    DeploymentId::new("etl", "nightly").unwrap()
}

fn run_at(offset_s: i64, queue: &str) -> FlowRun {
    ferry_core::testkit::scheduled_run(&dep_id(), queue, t0() + Duration::seconds(offset_s), t0())
}

fn deployment(next_tick_s: Option<i64>) -> Deployment {
    let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": "nightly", "entrypoint": "run.sh"
    }))
    .unwrap();
    Deployment {
        id: dep_id(),
        spec,
        revision: 1,
        version: 1,
        schedule_digest: "d".into(),
        scheduled_until: Some(t0()),
        next_tick_at: next_tick_s.map(|s| t0() + Duration::seconds(s)),
        created_at: t0(),
        updated_at: t0(),
    }
}

fn claimed(run: &FlowRun, agent: &str, slots: Vec<SlotKey>) -> FlowRun {
    transition(
        run,
        RunEvent::Claim {
            lease: RunLease {
                agent_id: agent.into(),
                expires_at: t0() + Duration::seconds(60),
            },
            slots,
        },
        t0(),
    )
    .unwrap()
}

/// Runs every check; `make` returns a fresh, empty store each call.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    insert_is_attribute_not_exists(make().await).await;
    idempotency_key_returns_the_first_run(make().await).await;
    update_is_version_conditional(make().await).await;
    concurrent_claims_of_one_run_have_one_winner(make().await).await;
    slot_limits_hold_under_concurrent_claims(make().await).await;
    finishing_a_run_releases_its_slots(make().await).await;
    due_runs_are_waiting_runs_of_the_queue_in_time_order(make().await).await;
    due_runs_list_late_runs_first_and_page_after_a_run(make().await).await;
    scheduled_due_reads_only_runs_not_yet_late(make().await).await;
    finish_with_retry_is_all_or_nothing(make().await).await;
    expired_leases_are_found(make().await).await;
    launched_runs_wait_in_the_launch_index_not_in_their_queue(make().await).await;
    infra_profiles_are_version_conditional(make().await).await;
    deployments_are_revision_conditional_and_indexed_by_horizon(make().await).await;
    queues_are_created_once_and_updated_by_version(make().await).await;
    list_runs_filters(make().await).await;
    agents_are_recorded_once_per_name_and_listed_by_last_poll(make().await).await;
    list_runs_windows_split_at_a_time_and_keep_the_filters(make().await).await;
    run_ids_are_found_by_prefix_through_their_time(make().await).await;
    pages_follow_a_keyset_cursor_through_runs_sharing_one_time(make().await).await;
    pages_keep_the_state_queue_and_deployment_filters(make().await).await;
    a_between_window_lists_and_counts_runs_from_lo_up_to_hi(make().await).await;
    due_counts_are_a_queues_waiting_runs_due_and_late(make().await).await;
}

/// A second insert of the same id reports the existing run and changes nothing.
pub async fn insert_is_attribute_not_exists(s: Arc<dyn Store>) {
    let r = run_at(0, "default");
    assert_eq!(s.insert_run(&r).await.unwrap(), InsertOutcome::Inserted);
    let mut other = r.clone();
    other.parameters.insert("x".into(), 1.into());
    match s.insert_run(&other).await.unwrap() {
        InsertOutcome::Exists(existing) => assert_eq!(*existing, r),
        InsertOutcome::Inserted => panic!("duplicate insert succeeded"),
    }
    assert_eq!(s.get_run(r.id).await.unwrap().unwrap(), r);
}

/// Two runs with the same deployment + idempotency key: the second returns the first.
pub async fn idempotency_key_returns_the_first_run(s: Arc<dyn Store>) {
    let mut a = run_at(0, "default");
    a.id = RunId::adhoc(t0(), [1; 10]);
    a.idempotency_key = Some("k".into());
    let mut b = a.clone();
    b.id = RunId::adhoc(t0(), [2; 10]);
    assert_eq!(s.insert_run(&a).await.unwrap(), InsertOutcome::Inserted);
    match s.insert_run(&b).await.unwrap() {
        InsertOutcome::Exists(existing) => assert_eq!(existing.id, a.id),
        InsertOutcome::Inserted => panic!("idempotency key ignored"),
    }
    assert!(s.get_run(b.id).await.unwrap().is_none());
}

/// A write against a stale version loses with `Conflict`.
pub async fn update_is_version_conditional(s: Arc<dyn Store>) {
    let r = run_at(0, "default");
    s.insert_run(&r).await.unwrap();
    let late = transition(&r, RunEvent::MarkLate, t0()).unwrap();
    s.update_run(&late, r.version).await.unwrap();
    // A different writer's change from the same stale version must lose. (Replaying the exact
    // same write — a retried request whose first attempt landed — may count as a success.)
    let again = transition(&r, RunEvent::MarkLate, t0() + Duration::seconds(1)).unwrap();
    assert!(matches!(
        s.update_run(&again, r.version).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.delete_run(r.id, r.version).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_run(r.id).await.unwrap().unwrap().state,
        StateType::Late
    );
}

/// Eight agents claim the same run at once: exactly one wins.
pub async fn concurrent_claims_of_one_run_have_one_winner(s: Arc<dyn Store>) {
    let r = run_at(0, "default");
    s.insert_run(&r).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let c = claimed(&r, &format!("agent-{i}"), vec![]);
        tasks.push(tokio::spawn(async move {
            s.claim_run(&c, 0, &[]).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if let ClaimOutcome::Claimed(_) = t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        s.get_run(r.id).await.unwrap().unwrap().state,
        StateType::Pending
    );
}

/// With a limit of 2, six runs claimed at once: two win, the rest see the slot full.
pub async fn slot_limits_hold_under_concurrent_claims(s: Arc<dyn Store>) {
    let runs: Vec<_> = (0..6).map(|i| run_at(i, "limited")).collect();
    for r in &runs {
        s.insert_run(r).await.unwrap();
    }
    let slot = SlotTake {
        key: queue("limited"),
        limit: 2,
    };
    let mut tasks = Vec::new();
    for r in &runs {
        let s = s.clone();
        let c = claimed(r, "a", vec![slot.key.clone()]);
        let slot = slot.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_run(&c, 0, &[slot]).await.unwrap()
        }));
    }
    let mut claimed_n = 0;
    for t in tasks {
        match t.await.unwrap() {
            ClaimOutcome::Claimed(_) => claimed_n += 1,
            ClaimOutcome::SlotFull(k) => assert_eq!(k, queue("limited")),
            ClaimOutcome::Lost => panic!("no one else touched these runs"),
        }
    }
    assert_eq!(claimed_n, 2);
    assert_eq!(s.slot_holders(&queue("limited")).await.unwrap(), 2);
}

/// A terminal state drops the slots; the next claim gets one.
pub async fn finishing_a_run_releases_its_slots(s: Arc<dyn Store>) {
    let a = run_at(0, "one");
    let b = run_at(1, "one");
    s.insert_run(&a).await.unwrap();
    s.insert_run(&b).await.unwrap();
    let slot = [SlotTake {
        key: SlotKey::Deployment(dep_id()),
        limit: 1,
    }];
    let ca = claimed(&a, "x", vec![slot[0].key.clone()]);
    assert!(matches!(
        s.claim_run(&ca, 0, &slot).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    let cb = claimed(&b, "x", vec![slot[0].key.clone()]);
    assert!(matches!(
        s.claim_run(&cb, 0, &slot).await.unwrap(),
        ClaimOutcome::SlotFull(_)
    ));
    let started = transition(&ca, RunEvent::Start { log_location: None }, t0()).unwrap();
    s.update_run(&started, ca.version).await.unwrap();
    assert_eq!(
        s.slot_holders(&SlotKey::Deployment(dep_id()))
            .await
            .unwrap(),
        1
    );
    let result = ferry_core::result::RunResult::Inline {
        value: serde_json::json!({"rows": 3, "names": ["a", "é"], "ok": true, "none": null}),
    };
    let done = transition(
        &started,
        RunEvent::Complete {
            result: Some(result.clone()),
        },
        t0(),
    )
    .unwrap();
    s.update_run(&done, started.version).await.unwrap();
    let stored = s.get_run(done.id).await.unwrap().unwrap();
    assert_eq!(
        stored.result,
        Some(result),
        "the result is stored with the Complete transition"
    );
    assert_eq!(
        s.slot_holders(&SlotKey::Deployment(dep_id()))
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        s.claim_run(&cb, 0, &slot).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
}

/// The due index holds only Scheduled/Late runs of the queue, earliest first.
pub async fn due_runs_are_waiting_runs_of_the_queue_in_time_order(s: Arc<dyn Store>) {
    let later = run_at(120, "q");
    let sooner = run_at(60, "q");
    let other_queue = run_at(30, "other");
    let future = run_at(3600, "q");
    for r in [&later, &sooner, &other_queue, &future] {
        s.insert_run(r).await.unwrap();
    }
    let due = s
        .due_runs("q", t0() + Duration::seconds(600), 10)
        .await
        .unwrap();
    let ids: Vec<_> = due.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![sooner.id, later.id]);
    let c = claimed(&sooner, "a", vec![]);
    s.claim_run(&c, 0, &[]).await.unwrap();
    let due = s
        .due_runs("q", t0() + Duration::seconds(600), 10)
        .await
        .unwrap();
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), vec![later.id]);
    assert_eq!(s.waiting_runs_of(&dep_id()).await.unwrap().len(), 3);
}

/// Late runs come before Scheduled ones; a page after a run continues past it, even when
/// that run has been claimed meanwhile.
pub async fn due_runs_list_late_runs_first_and_page_after_a_run(s: Arc<dyn Store>) {
    let runs: Vec<FlowRun> = (0..5).map(|i| run_at(60 * i, "q")).collect();
    for r in &runs {
        s.insert_run(r).await.unwrap();
    }
    // The two latest become Late (out of time order on purpose: the index groups by state).
    for r in &runs[3..] {
        let late = transition(r, RunEvent::MarkLate, t0()).unwrap();
        s.update_run(&late, r.version).await.unwrap();
    }
    let before = t0() + Duration::seconds(600);
    let ids = |v: &[FlowRun]| v.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = s.due_runs("q", before, 10).await.unwrap();
    let expected = [3, 4, 0, 1, 2].map(|i| runs[i].id).to_vec();
    assert_eq!(
        ids(&all),
        expected,
        "late first, then scheduled, each by time"
    );
    let first = s.due_runs_after("q", before, None, 2).await.unwrap();
    assert_eq!(ids(&first), expected[..2]);
    // The cursor run is claimed before the next page is read: the page still follows it.
    let c = claimed(&first[1], "a", vec![]);
    s.claim_run(&c, first[1].version, &[]).await.unwrap();
    let second = s
        .due_runs_after("q", before, first.last(), 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), expected[2..4]);
    let third = s
        .due_runs_after("q", before, second.last(), 2)
        .await
        .unwrap();
    assert_eq!(ids(&third), expected[4..]);
}

/// Late marking's read: Scheduled runs due by then, never Late or held ones, nor other queues.
pub async fn scheduled_due_reads_only_runs_not_yet_late(s: Arc<dyn Store>) {
    let runs: Vec<FlowRun> = (0..4).map(|i| run_at(60 * i, "q")).collect();
    for r in &runs {
        s.insert_run(r).await.unwrap();
    }
    s.insert_run(&run_at(30, "other")).await.unwrap();
    let late = transition(&runs[0], RunEvent::MarkLate, t0()).unwrap();
    s.update_run(&late, 0).await.unwrap();
    let c = claimed(&runs[1], "a", vec![]);
    s.claim_run(&c, 0, &[]).await.unwrap();
    let found = s
        .scheduled_due("q", t0() + Duration::seconds(150), 10)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![runs[2].id],
        "only Scheduled runs due by the threshold"
    );
}

/// A final state and its retry are written together or not at all.
pub async fn finish_with_retry_is_all_or_nothing(s: Arc<dyn Store>) {
    let r = run_at(0, "default");
    s.insert_run(&r).await.unwrap();
    let c = claimed(&r, "a", vec![queue("default")]);
    let slot = [SlotTake {
        key: queue("default"),
        limit: 1,
    }];
    s.claim_run(&c, 0, &slot).await.unwrap();
    let failed = transition(
        &c,
        RunEvent::Fail {
            exit_code: Some(1),
            reason: "exit code 1".into(),
        },
        t0(),
    )
    .unwrap();
    let retry = failed
        .next_attempt(
            1,
            Duration::seconds(10),
            &ferry_core::testkit::queue("default"),
            t0(),
        )
        .unwrap();
    // A stale holder writes nothing — neither the final state nor the retry.
    let mut stale = c.clone();
    stale.version += 7;
    assert!(matches!(
        s.finish_with_retry(&stale, &failed, &retry).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.get_run(retry.id).await.unwrap().is_none());
    assert_eq!(s.get_run(r.id).await.unwrap().unwrap(), c);
    // A retry whose id exists already: the final state is not written either.
    let mut squatter = retry.clone();
    squatter.parameters.insert("other".into(), 1.into());
    s.insert_run(&squatter).await.unwrap();
    assert!(matches!(
        s.finish_with_retry(&c, &failed, &retry).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_run(r.id).await.unwrap().unwrap(), c);
    s.delete_run(squatter.id, squatter.version).await.unwrap();
    // Both conditions hold: both land, and the slot the run held is free again.
    s.finish_with_retry(&c, &failed, &retry).await.unwrap();
    assert_eq!(s.get_run(r.id).await.unwrap().unwrap(), failed);
    assert_eq!(s.get_run(retry.id).await.unwrap().unwrap(), retry);
    assert_eq!(s.slot_holders(&queue("default")).await.unwrap(), 0);
}

/// Held runs whose lease expired are found; others are not.
pub async fn expired_leases_are_found(s: Arc<dyn Store>) {
    let r = run_at(0, "default");
    s.insert_run(&r).await.unwrap();
    let c = claimed(&r, "a", vec![]);
    s.claim_run(&c, 0, &[]).await.unwrap();
    assert!(s
        .expired_leases(t0() + Duration::seconds(30), 10)
        .await
        .unwrap()
        .is_empty());
    let found = s
        .expired_leases(t0() + Duration::seconds(61), 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, r.id);
}

/// Deployments: create-if-absent, version-conditional update (the concurrency token, apart
/// from the user's revision), horizon index.
pub async fn deployments_are_revision_conditional_and_indexed_by_horizon(s: Arc<dyn Store>) {
    let d = deployment(Some(10));
    s.put_deployment(&d, None).await.unwrap();
    // Another writer's create of the same id loses. (Replaying the very same write may count
    // as a success: it is how a retried request whose first attempt landed looks.)
    let mut other = d.clone();
    other.updated_at += Duration::seconds(1);
    assert!(matches!(
        s.put_deployment(&other, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s
        .deployments_due_for_tick(t0(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.deployments_due_for_tick(t0() + Duration::seconds(10), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get_deployment(&dep_id()).await.unwrap().unwrap().version,
        1,
        "a read fills the version"
    );
    // Bookkeeping (the tick parks it): a new version, the user's revision unchanged.
    let mut parked = d.clone();
    parked.version = 2;
    parked.next_tick_at = None;
    s.put_deployment(&parked, Some(1)).await.unwrap();
    let mut stale = parked.clone();
    stale.updated_at += Duration::seconds(1);
    assert!(matches!(
        s.put_deployment(&stale, Some(1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s
        .deployments_due_for_tick(t0() + Duration::days(365), 10)
        .await
        .unwrap()
        .is_empty());
    let stored = s.get_deployment(&dep_id()).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.revision), (2, 1));
    assert_eq!(s.list_deployments().await.unwrap()[0].version, 2);
    assert!(matches!(
        s.delete_deployment(&dep_id(), 1).await,
        Err(StoreError::Conflict(_))
    ));
    s.delete_deployment(&dep_id(), 2).await.unwrap();
    assert!(s.list_deployments().await.unwrap().is_empty());
}

/// Queues: created once, updated by version.
pub async fn queues_are_created_once_and_updated_by_version(s: Arc<dyn Store>) {
    let q = WorkQueue::new(ferry_core::testkit::queue("prio1"), t0());
    s.create_queue(&q).await.unwrap();
    let mut other = q.clone();
    other.priority = 7;
    assert!(matches!(
        s.create_queue(&other).await,
        Err(StoreError::Conflict(_))
    ));
    let mut p = q.clone();
    p.paused = true;
    s.update_queue(&p, 0).await.unwrap();
    assert!(matches!(
        s.update_queue(&p, 0).await,
        Err(StoreError::Conflict(_))
    ));
    let stored = s.get_queue("prio1").await.unwrap().unwrap();
    assert!(stored.paused);
    assert_eq!(stored.version, 1);
    assert_eq!(s.list_queues().await.unwrap().len(), 1);
}

/// Listing filters by deployment and state, newest first, with a limit.
pub async fn list_runs_filters(s: Arc<dyn Store>) {
    for i in 0..5 {
        s.insert_run(&run_at(i * 60, "default")).await.unwrap();
    }
    let all = s
        .list_runs(&RunFilter {
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].scheduled_time > all[1].scheduled_time);
    let late = s
        .list_runs(&RunFilter {
            states: vec![StateType::Late],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(late.is_empty());
    let mine = s
        .list_runs(&RunFilter {
            deployment: Some(dep_id()),
            states: vec![StateType::Scheduled],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 5);
}

/// The windows of `flow-run ls`: runs scheduled up to a time newest first, those after it
/// soonest first, each with the deployment, queue and state filters and the limit.
pub async fn list_runs_windows_split_at_a_time_and_keep_the_filters(s: Arc<dyn Store>) {
    for i in -3..=3 {
        s.insert_run(&run_at(i * 60, if i % 2 == 0 { "default" } else { "odd" }))
            .await
            .unwrap();
    }
    let other = DeploymentId::new("etl", "other").unwrap();
    let foreign =
        ferry_core::testkit::scheduled_run(&other, "default", t0() - Duration::seconds(30), t0());
    s.insert_run(&foreign).await.unwrap();
    let offsets = |runs: &[FlowRun]| -> Vec<i64> {
        runs.iter()
            .map(|r| (r.scheduled_time - t0()).num_seconds())
            .collect()
    };
    let list = |window, limit, deployment: Option<DeploymentId>, queue: Option<&str>| {
        let s = s.clone();
        let filter = RunFilter {
            deployment,
            work_queue: queue.map(str::to_owned),
            limit,
            window,
            ..Default::default()
        };
        async move { s.list_runs(&filter).await.unwrap() }
    };
    let mine = Some(dep_id());
    assert_eq!(
        offsets(&list(RunWindow::DueBy(t0()), 10, mine.clone(), None).await),
        vec![0, -60, -120, -180]
    );
    assert_eq!(
        offsets(&list(RunWindow::DueBy(t0()), 10, None, None).await),
        vec![0, -30, -60, -120, -180]
    );
    assert_eq!(
        offsets(&list(RunWindow::DueBy(t0()), 2, None, None).await),
        vec![0, -30]
    );
    assert_eq!(
        offsets(&list(RunWindow::After(t0()), 10, mine.clone(), None).await),
        vec![60, 120, 180]
    );
    assert_eq!(
        offsets(&list(RunWindow::After(t0()), 2, None, None).await),
        vec![60, 120]
    );
    assert_eq!(
        offsets(&list(RunWindow::After(t0()), 10, None, Some("odd")).await),
        vec![60, 180]
    );
    assert_eq!(
        offsets(&list(RunWindow::DueBy(t0()), 10, mine.clone(), Some("odd")).await),
        vec![-60, -180]
    );
    let done = s
        .list_runs(&RunFilter {
            states: vec![StateType::Completed],
            window: RunWindow::DueBy(t0()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(done.is_empty());
    assert_eq!(list(RunWindow::All, 0, None, None).await.len(), 8);
}

/// Run ids by prefix: every run whose id starts with the prefix, whatever its length, found
/// through the scheduled time the id carries; at most `limit`.
pub async fn run_ids_are_found_by_prefix_through_their_time(s: Arc<dyn Store>) {
    use ferry_core::ids::RunIdPrefix;
    let mut ids = Vec::new();
    for offset_ms in [0, 1, 30_000, 86_400_000] {
        let mut r = run_at(0, "default");
        r.scheduled_time = t0() + Duration::milliseconds(offset_ms);
        r.id = RunId::scheduled(&dep_id(), r.scheduled_time);
        s.insert_run(&r).await.unwrap();
        ids.push(r.id);
    }
    // An ad-hoc run: its id carries its scheduled time too.
    let mut adhoc = run_at(0, "default");
    adhoc.scheduled_time = t0() + Duration::milliseconds(1);
    adhoc.id = RunId::adhoc(adhoc.scheduled_time, [5; 10]);
    s.insert_run(&adhoc).await.unwrap();
    ids.push(adhoc.id);
    for id in &ids {
        let text = id.to_string();
        for len in [4, 8, 11, 13, 15, 20, 36] {
            let prefix = RunIdPrefix::parse("id", &text[..len]).unwrap();
            let mut want: Vec<RunId> = ids.iter().copied().filter(|i| prefix.matches(*i)).collect();
            want.sort();
            let got = s.run_ids_with_prefix(&prefix, 100).await.unwrap();
            assert_eq!(got, want, "prefix {prefix}");
            if want.len() > 1 {
                let one = s.run_ids_with_prefix(&prefix, 1).await.unwrap();
                assert_eq!(one.len(), 1, "prefix {prefix} with limit 1");
            }
        }
    }
    let nobody = RunIdPrefix::parse("id", "ffffffff").unwrap();
    assert!(s.run_ids_with_prefix(&nobody, 10).await.unwrap().is_empty());
}

/// The code-store checks: digest verified on write, round trip, idempotent re-put.
pub async fn code_store_suite(c: Arc<dyn ferry_core::ports::CodeStore>) {
    use ferry_core::digest::BundleDigest;
    use ferry_core::ports::CodeStoreError;
    let bytes = b"not really a tarball, but bytes are bytes".to_vec();
    let sha = BundleDigest::of(&bytes);
    assert!(!c.has_bundle(&sha).await.unwrap());
    assert!(c.get_bundle(&sha).await.unwrap().is_none());
    let wrong = BundleDigest::of(b"other");
    assert!(matches!(
        c.put_bundle(&wrong, &bytes).await,
        Err(CodeStoreError::DigestMismatch { .. })
    ));
    assert!(
        !c.has_bundle(&wrong).await.unwrap(),
        "a mismatched bundle must not be stored"
    );
    c.put_bundle(&sha, &bytes).await.unwrap();
    c.put_bundle(&sha, &bytes).await.unwrap();
    assert!(c.has_bundle(&sha).await.unwrap());
    assert_eq!(c.get_bundle(&sha).await.unwrap().unwrap(), bytes);

    // Results: keyed by run id, absent until put, a second put replaces the first, runs apart.
    let run = RunId::adhoc(t0(), [3; 10]);
    let other = RunId::adhoc(t0(), [4; 10]);
    assert!(c.get_result(run).await.unwrap().is_none());
    let big: Vec<u8> = serde_json::to_vec(&"r".repeat(200_000)).unwrap();
    let location = c.put_result(run, &big).await.unwrap();
    assert!(
        location.contains(&run.to_string()),
        "the location {location} names the run"
    );
    assert_eq!(c.get_result(run).await.unwrap().unwrap(), big);
    assert!(c.get_result(other).await.unwrap().is_none());
    c.put_result(run, b"{\"rows\":3}").await.unwrap();
    assert_eq!(c.get_result(run).await.unwrap().unwrap(), b"{\"rows\":3}");
    assert!(
        !c.has_bundle(&BundleDigest::of(b"{\"rows\":3}"))
            .await
            .unwrap(),
        "a result is not a bundle"
    );
}

/// The log-sink checks: appends are read back in order, pages follow offsets (from anywhere in
/// a log of many appends), a log is readable while it grows, an unknown run has an empty log.
pub async fn log_sink_suite(l: Arc<dyn ferry_core::ports::LogSink>) {
    use ferry_core::ports::{LogLine, LogStream};
    let run = RunId::adhoc(t0(), [7; 10]);
    let line = |i: usize| LogLine {
        at: t0() + Duration::milliseconds(i as i64),
        stream: if i.is_multiple_of(2) {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        },
        line: format!("line {i}"),
    };
    let empty = l.read(run, 0, 100).await.unwrap();
    assert!(empty.lines.is_empty());
    assert_eq!(empty.next_offset, 0);
    l.append(run, &(0..3).map(line).collect::<Vec<_>>())
        .await
        .unwrap();
    let first = l.read(run, 0, 100).await.unwrap();
    assert_eq!(first.lines.len(), 3);
    assert_eq!(first.next_offset, 3);
    // Readable while the run goes on: a later append shows up from the offset.
    l.append(run, &(3..8).map(line).collect::<Vec<_>>())
        .await
        .unwrap();
    let next = l.read(run, first.next_offset, 100).await.unwrap();
    assert_eq!(next.lines, (3..8).map(line).collect::<Vec<_>>());
    assert_eq!(next.next_offset, 8);
    let page = l.read(run, 2, 3).await.unwrap();
    assert_eq!(page.lines, (2..5).map(line).collect::<Vec<_>>());
    assert_eq!(page.next_offset, 5);
    assert!(l.read(run, 8, 10).await.unwrap().lines.is_empty());
    assert!(!l.location(run).is_empty());

    // Pages from any offset of a log written in many appends: a page spans appends, ends at
    // the log's end, and an offset past the end is an empty page that keeps its offset.
    let paged = RunId::adhoc(t0(), [9; 10]);
    let all: Vec<_> = (0..1_000).map(line).collect();
    for batch in all.chunks(97) {
        l.append(paged, batch).await.unwrap();
    }
    for (offset, limit) in [(0, 1_000), (950, 30), (96, 3), (500, 200), (990, 50)] {
        let page = l.read(paged, offset, limit).await.unwrap();
        let end = (offset as usize + limit).min(all.len());
        assert_eq!(
            page.lines,
            all[offset as usize..end],
            "page {offset}+{limit}"
        );
        assert_eq!(page.next_offset, end as u64, "page {offset}+{limit}");
    }
    let past = l.read(paged, 5_000, 10).await.unwrap();
    assert!(past.lines.is_empty());
    assert_eq!(past.next_offset, 5_000);
}

/// The log cap, for a sink built to keep at most `cap` bytes per run (at least 3 lines' worth,
/// at most 20): lines are kept until the log reaches `cap`, then one marker line (stream
/// `ferry`, naming the cap) closes it and every later line is dropped, in that append and the
/// next ones; the capped log still pages from any offset.
pub async fn log_sink_cap_suite(l: Arc<dyn ferry_core::ports::LogSink>, cap: u64) {
    use ferry_core::ports::{LogLine, LogStream};
    let run = RunId::adhoc(t0(), [10; 10]);
    // Whole seconds and fixed-width text: every line has the same stored size.
    let line = |i: usize| LogLine {
        at: t0() + Duration::seconds(i as i64),
        stream: LogStream::Stdout,
        line: format!("capped line {i:04}"),
    };
    let size = serde_json::to_vec(&line(0)).unwrap().len() as u64 + 1;
    assert!(
        (3 * size..=20 * size).contains(&cap),
        "pick a cap of 3 to 20 lines ({size} bytes each)"
    );
    // The first line that takes the log to the cap is kept, then the marker.
    let kept = cap.div_ceil(size) as usize;
    let sent: Vec<_> = (0..30).map(line).collect();
    for batch in sent.chunks(7) {
        l.append(run, batch).await.unwrap();
    }
    let page = l.read(run, 0, 1_000).await.unwrap();
    assert_eq!(page.lines.len(), kept + 1, "{kept} lines and the marker");
    assert_eq!(page.lines[..kept], sent[..kept]);
    let marker = &page.lines[kept];
    assert_eq!(marker.stream, LogStream::Ferry);
    assert!(
        marker.line.contains("cap") && marker.line.contains(&cap.to_string()),
        "the marker names the cap: {}",
        marker.line
    );
    // A closed log stays closed.
    l.append(run, &[line(99)]).await.unwrap();
    let again = l.read(run, 0, 1_000).await.unwrap();
    assert_eq!(again.lines, page.lines);
    let tail = l.read(run, kept as u64, 10).await.unwrap();
    assert_eq!(tail.lines, vec![marker.clone()]);
    assert_eq!(tail.next_offset, kept as u64 + 1);
}

fn launched_run_at(offset_s: i64) -> FlowRun {
    let mut run = run_at(offset_s, "default");
    run.infra = Some("ecs/prod".parse().unwrap());
    run
}

/// Runs of launched deployments are never listed to agents; the launch index lists them while
/// they wait (Late first, paged like the due index), and `awaiting_tasks` while the launcher
/// holds them.
pub async fn launched_runs_wait_in_the_launch_index_not_in_their_queue(s: Arc<dyn Store>) {
    let plain = run_at(0, "default");
    let launched: Vec<FlowRun> = (1..=3).map(launched_run_at).collect();
    s.insert_run(&plain).await.unwrap();
    for r in &launched {
        s.insert_run(r).await.unwrap();
    }
    let until = t0() + Duration::seconds(100);
    let due: Vec<RunId> = s
        .due_runs("default", until, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, vec![plain.id], "agents see only the plain run");
    let sched: Vec<RunId> = s
        .scheduled_due("default", until, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(sched, vec![plain.id]);
    // The second becomes Late: listed first.
    let late = transition(&launched[1], RunEvent::MarkLate, t0()).unwrap();
    s.update_run(&late, 0).await.unwrap();
    let ids = |v: Vec<FlowRun>| v.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = ids(s.launchable_after(until, None, 10).await.unwrap());
    assert_eq!(all, vec![launched[1].id, launched[0].id, launched[2].id]);
    let first = s.launchable_after(until, None, 1).await.unwrap();
    let next = ids(s
        .launchable_after(until, Some(&first[0]), 10)
        .await
        .unwrap());
    assert_eq!(
        next,
        vec![launched[0].id, launched[2].id],
        "paged after a run"
    );
    let early = ids(s
        .launchable_after(t0() + Duration::seconds(2), None, 10)
        .await
        .unwrap());
    assert_eq!(
        early,
        vec![launched[1].id, launched[0].id],
        "due by the bound"
    );
    assert!(s.awaiting_tasks(10).await.unwrap().is_empty());
    // Launched: out of the launch index, into awaiting_tasks; taken over: out of both.
    let launch = ferry_core::launch::Launch {
        infra: "ecs/prod".parse().unwrap(),
        attempt: 1,
        task: None,
        launched_at: t0(),
        start_deadline: t0() + Duration::seconds(300),
    };
    let held = transition(
        &launched[0],
        RunEvent::Launch {
            launch,
            slots: vec![],
            message: "launched".into(),
        },
        t0(),
    )
    .unwrap();
    assert!(matches!(
        s.claim_run(&held, 0, &[]).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    assert_eq!(
        ids(s.launchable_after(until, None, 10).await.unwrap()),
        vec![launched[1].id, launched[2].id]
    );
    let awaiting = s.awaiting_tasks(10).await.unwrap();
    assert_eq!(ids(awaiting.clone()), vec![launched[0].id]);
    assert_eq!(awaiting[0], held);
    let taken = transition(
        &held,
        RunEvent::TakeOver {
            attempt: 1,
            lease: RunLease {
                agent_id: "task-1".into(),
                expires_at: t0() + Duration::seconds(30),
            },
        },
        t0(),
    )
    .unwrap();
    s.update_run(&taken, held.version).await.unwrap();
    assert!(s.awaiting_tasks(10).await.unwrap().is_empty());
    assert_eq!(s.get_run(taken.id).await.unwrap().unwrap(), taken);
    assert!(s
        .due_runs("default", until, 10)
        .await
        .unwrap()
        .iter()
        .all(|r| r.id == plain.id));
}

/// Profiles: created once, updated and deleted only at the version read.
pub async fn infra_profiles_are_version_conditional(s: Arc<dyn Store>) {
    use ferry_core::infra::{InfraProfile, InfraSpec};
    let mut p = InfraProfile {
        name: "process/local".parse().unwrap(),
        spec: InfraSpec::default(),
        version: 1,
        created_at: t0(),
        updated_at: t0(),
    };
    assert!(s.get_infra(&p.name).await.unwrap().is_none());
    s.put_infra(&p, None).await.unwrap();
    let mut other = p.clone();
    other.spec.max_launches = 5;
    assert!(matches!(
        s.put_infra(&other, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_infra(&p.name).await.unwrap(), Some(p.clone()));
    p.spec.launch_lead_seconds = 30;
    p.version = 2;
    s.put_infra(&p, Some(1)).await.unwrap();
    other.version = 2;
    assert!(matches!(
        s.put_infra(&other, Some(1)).await,
        Err(StoreError::Conflict(_))
    ));
    let mut ecs = p.clone();
    ecs.name = "ecs/prod".parse().unwrap();
    ecs.version = 1;
    s.put_infra(&ecs, None).await.unwrap();
    let names: Vec<String> = s
        .list_infra()
        .await
        .unwrap()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, vec!["ecs/prod", "process/local"]);
    assert!(matches!(
        s.delete_infra(&p.name, 1).await,
        Err(StoreError::Conflict(_))
    ));
    s.delete_infra(&p.name, 2).await.unwrap();
    assert!(s.get_infra(&p.name).await.unwrap().is_none());
    assert_eq!(s.list_infra().await.unwrap(), vec![ecs]);
}

fn presence(name: &str, queues: &[&str], running: u32) -> ferry_core::agent::AgentPresence {
    ferry_core::agent::AgentPresence {
        name: name.into(),
        queues: queues
            .iter()
            .map(|q| ferry_core::testkit::queue(q))
            .collect(),
        host: "box-1".into(),
        version: "0.1.0".into(),
        limit: 4,
        running,
        path: ferry_core::agent::AgentPath::Api,
    }
}

/// A poll upserts the agent's record: `first_seen` stays, `last_poll` and what it reported
/// change; listings are by name and leave out agents that last polled before `since`.
pub async fn agents_are_recorded_once_per_name_and_listed_by_last_poll(s: Arc<dyn Store>) {
    assert!(s
        .list_agents(t0() - Duration::days(7))
        .await
        .unwrap()
        .is_empty());
    let first = s
        .record_agent(&presence("b-agent", &["default"], 0), t0())
        .await
        .unwrap();
    assert_eq!(
        (first.first_seen, first.last_poll),
        (t0(), t0()),
        "a new agent is first seen at its first poll"
    );
    let later = t0() + Duration::milliseconds(12_345);
    let again = s
        .record_agent(&presence("b-agent", &["default", "gpu"], 3), later)
        .await
        .unwrap();
    assert_eq!((again.first_seen, again.last_poll), (t0(), later));
    assert_eq!(again.presence, presence("b-agent", &["default", "gpu"], 3));
    s.record_agent(
        &presence("a-agent", &["gpu"], 1),
        t0() + Duration::seconds(1),
    )
    .await
    .unwrap();
    let all = s.list_agents(t0() - Duration::days(7)).await.unwrap();
    let names: Vec<&str> = all.iter().map(|a| a.presence.name.as_str()).collect();
    assert_eq!(names, ["a-agent", "b-agent"], "by name");
    assert_eq!(all[1], again, "the list shows the record as stored");
    let recent = s.list_agents(t0() + Duration::seconds(5)).await.unwrap();
    let names: Vec<&str> = recent.iter().map(|a| a.presence.name.as_str()).collect();
    assert_eq!(
        names,
        ["b-agent"],
        "agents that polled before `since` are left out"
    );
    // A week later, the old records are gone or at least not listed.
    let week = later + ferry_core::ports::AGENT_RETENTION + Duration::seconds(1);
    s.record_agent(&presence("c-agent", &["default"], 0), week)
        .await
        .unwrap();
    let now = s
        .list_agents(week - ferry_core::ports::AGENT_RETENTION)
        .await
        .unwrap();
    let names: Vec<&str> = now.iter().map(|a| a.presence.name.as_str()).collect();
    assert_eq!(names, ["c-agent"]);
}

/// A run of `deployment` on `queue` at `t0 + offset_s`, in `state`; `n` tells apart runs of
/// the same time (it is the id's randomness).
fn run_in(
    deployment: &DeploymentId,
    queue: &str,
    offset_s: i64,
    n: u8,
    state: StateType,
) -> FlowRun {
    let at = t0() + Duration::seconds(offset_s);
    let mut r = ferry_core::testkit::scheduled_run(deployment, queue, at, t0());
    r.id = RunId::adhoc(at, [n; 10]);
    r.state = state;
    r
}

/// Every page of `filter` (its `limit` is the page size), each continuing after the last run
/// of the one before, until an empty page.
async fn pages(s: &Arc<dyn Store>, filter: &RunFilter) -> Vec<Vec<FlowRun>> {
    let mut out: Vec<Vec<FlowRun>> = Vec::new();
    let mut after = filter.after;
    loop {
        let page = s
            .list_runs(&RunFilter {
                after,
                ..filter.clone()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        assert!(page.len() <= filter.limit, "a page longer than the limit");
        after = Some(RunCursor::of(last));
        out.push(page);
        assert!(
            out.len() <= 100,
            "pages never end: the cursor does not advance"
        );
    }
}

fn ids(runs: &[FlowRun]) -> Vec<RunId> {
    runs.iter().map(|r| r.id).collect()
}

/// Keyset pages: ten runs share one scheduled time (the id orders them), others around it;
/// paging by 3 through every window lists each run once, in the window's order — the same
/// list as one unpaged read — and a cursor on the last run gives an empty page.
pub async fn pages_follow_a_keyset_cursor_through_runs_sharing_one_time(s: Arc<dyn Store>) {
    let d = dep_id();
    for n in 0..10 {
        s.insert_run(&run_in(&d, "default", 0, n, StateType::Scheduled))
            .await
            .unwrap();
    }
    for (offset, n) in [(-60, 20), (-1, 21), (1, 22), (60, 23)] {
        s.insert_run(&run_in(&d, "default", offset, n, StateType::Scheduled))
            .await
            .unwrap();
    }
    for window in [
        RunWindow::All,
        RunWindow::DueBy(t0()),
        RunWindow::After(t0() - Duration::seconds(30)),
        RunWindow::Between(t0() - Duration::seconds(30), t0() + Duration::seconds(30)),
    ] {
        for deployment in [None, Some(d.clone())] {
            let filter = RunFilter {
                window,
                deployment: deployment.clone(),
                limit: 3,
                ..Default::default()
            };
            let whole = s
                .list_runs(&RunFilter {
                    limit: 0,
                    ..filter.clone()
                })
                .await
                .unwrap();
            let paged = pages(&s, &filter).await;
            let flat: Vec<FlowRun> = paged.iter().flatten().cloned().collect();
            assert_eq!(ids(&flat), ids(&whole), "{window:?} {deployment:?}");
            let ascending = matches!(window, RunWindow::After(_));
            let mut sorted = flat.clone();
            sorted.sort_by_key(|r| (r.scheduled_time, r.id));
            if !ascending {
                sorted.reverse();
            }
            assert_eq!(
                ids(&flat),
                ids(&sorted),
                "{window:?}: not in (time, id) order"
            );
            let at_t0 = flat.iter().filter(|r| r.scheduled_time == t0()).count();
            assert_eq!(
                at_t0, 10,
                "{window:?}: runs sharing a time lost or repeated"
            );
            // Every page but the last is full.
            let (last, full) = paged.split_last().unwrap();
            assert!(full.iter().all(|p| p.len() == 3) && !last.is_empty());
            let expected = match window {
                RunWindow::All => 14,
                RunWindow::DueBy(_) => 12,
                RunWindow::After(_) => 13,
                RunWindow::Between(..) => 12,
            };
            assert_eq!(flat.len(), expected, "{window:?}");
        }
    }
    // A cursor on the very last run: nothing follows.
    let all = s.list_runs(&RunFilter::default()).await.unwrap();
    let past_end = s
        .list_runs(&RunFilter {
            after: Some(RunCursor::of(all.last().unwrap())),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(past_end.is_empty());
}

/// Pages of a state filter, a queue filter, both, several states, and a deployment with a
/// state: every run of the filter once, nothing else, in order.
pub async fn pages_keep_the_state_queue_and_deployment_filters(s: Arc<dyn Store>) {
    let d = dep_id();
    let other = DeploymentId::new("etl", "other").unwrap();
    let states = [
        StateType::Completed,
        StateType::Failed,
        StateType::Completed,
        StateType::Running,
    ];
    for (n, i) in (0..24i64).enumerate() {
        let dep = if i % 5 == 0 { &other } else { &d };
        let queue = if i % 3 == 0 { "gpu" } else { "default" };
        // Pairs share a time.
        let r = run_in(dep, queue, -(i / 2) * 60, n as u8, states[(i % 4) as usize]);
        s.insert_run(&r).await.unwrap();
    }
    let whole = s.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(whole.len(), 24);
    let cases: Vec<(RunFilter, &str)> = vec![
        (
            RunFilter {
                states: vec![StateType::Failed],
                ..Default::default()
            },
            "failed",
        ),
        (
            RunFilter {
                work_queue: Some("gpu".into()),
                ..Default::default()
            },
            "queue",
        ),
        (
            RunFilter {
                states: vec![StateType::Completed],
                work_queue: Some("gpu".into()),
                ..Default::default()
            },
            "completed on gpu",
        ),
        (
            RunFilter {
                states: vec![StateType::Failed, StateType::Running],
                ..Default::default()
            },
            "two states",
        ),
        (
            RunFilter {
                states: vec![StateType::Completed],
                deployment: Some(other.clone()),
                ..Default::default()
            },
            "deployment and state",
        ),
        (
            RunFilter {
                deployment: Some(d.clone()),
                work_queue: Some("gpu".into()),
                window: RunWindow::DueBy(t0() - Duration::seconds(120)),
                ..Default::default()
            },
            "deployment, queue, window",
        ),
    ];
    for (filter, what) in cases {
        let expected: Vec<RunId> = whole
            .iter()
            .filter(|r| filter.states.is_empty() || filter.states.contains(&r.state))
            .filter(|r| {
                filter
                    .work_queue
                    .as_ref()
                    .is_none_or(|q| r.work_queue == q.as_str())
            })
            .filter(|r| {
                filter
                    .deployment
                    .as_ref()
                    .is_none_or(|x| r.deployment == *x)
            })
            .filter(|r| match filter.window {
                RunWindow::DueBy(t) => r.scheduled_time <= t,
                _ => true,
            })
            .map(|r| r.id)
            .collect();
        assert!(!expected.is_empty(), "{what}: the case tests nothing");
        for size in [1, 2, 5] {
            let paged = pages(
                &s,
                &RunFilter {
                    limit: size,
                    ..filter.clone()
                },
            )
            .await;
            let flat: Vec<FlowRun> = paged.into_iter().flatten().collect();
            assert_eq!(ids(&flat), expected, "{what}, pages of {size}");
        }
    }
}

/// `Between(lo, hi)` lists runs scheduled from `lo` (included) up to `hi` (excluded), newest
/// first, and the counts per state of that window match it, every state listed.
pub async fn a_between_window_lists_and_counts_runs_from_lo_up_to_hi(s: Arc<dyn Store>) {
    let d = dep_id();
    let layout = [
        (-3600, StateType::Completed), // at lo: in
        (-1800, StateType::Failed),
        (-1800, StateType::Completed),
        (-60, StateType::Running),
        (0, StateType::Failed),      // at hi: out
        (-3601, StateType::Failed),  // before lo: out
        (600, StateType::Scheduled), // later: out
    ];
    for (n, (offset, state)) in layout.iter().enumerate() {
        s.insert_run(&run_in(&d, "default", *offset, n as u8, *state))
            .await
            .unwrap();
    }
    let (lo, hi) = (t0() - Duration::seconds(3600), t0());
    let listed = s
        .list_runs(&RunFilter {
            window: RunWindow::Between(lo, hi),
            ..Default::default()
        })
        .await
        .unwrap();
    let offsets: Vec<i64> = listed
        .iter()
        .map(|r| (r.scheduled_time - t0()).num_seconds())
        .collect();
    assert_eq!(offsets, vec![-60, -1800, -1800, -3600]);
    let counts = s.count_runs_by_state(lo, hi).await.unwrap();
    let states: Vec<StateType> = counts.iter().map(|(st, _)| *st).collect();
    assert_eq!(
        states,
        StateType::ALL.to_vec(),
        "every state, in lifecycle order"
    );
    let of = |st: StateType| counts.iter().find(|(x, _)| *x == st).unwrap().1;
    assert_eq!(of(StateType::Completed), 2);
    assert_eq!(of(StateType::Failed), 1);
    assert_eq!(of(StateType::Running), 1);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 4);
    // A state change moves the run between counts.
    let running = listed[0].clone();
    let mut done = running.clone();
    done.state = StateType::Completed;
    done.version += 1;
    s.update_run(&done, running.version).await.unwrap();
    let counts = s.count_runs_by_state(lo, hi).await.unwrap();
    let of = |st: StateType| counts.iter().find(|(x, _)| *x == st).unwrap().1;
    assert_eq!((of(StateType::Completed), of(StateType::Running)), (3, 0));
    // An empty window counts nothing.
    let empty = s.count_runs_by_state(hi, hi).await.unwrap();
    assert_eq!(empty.len(), StateType::ALL.len());
    assert!(empty.iter().all(|(_, n)| *n == 0));
    assert!(s
        .list_runs(&RunFilter {
            window: RunWindow::Between(hi, hi),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());
}

/// A queue's due count is its Late runs plus its Scheduled runs due by now; not later ones,
/// not held or finished ones, not another queue's, not a launched deployment's.
pub async fn due_counts_are_a_queues_waiting_runs_due_and_late(s: Arc<dyn Store>) {
    let d = dep_id();
    let mut n = 0u8;
    let mut add = |queue: &str, offset: i64, state: StateType| {
        n += 1;
        let mut r = run_in(&d, queue, offset, n, StateType::Scheduled);
        if state == StateType::Late {
            r = transition(&r, RunEvent::MarkLate, t0()).unwrap();
        } else {
            r.state = state;
        }
        r
    };
    let runs = vec![
        add("work", -600, StateType::Late),
        add("work", -500, StateType::Late),
        add("work", -30, StateType::Scheduled),
        add("work", 0, StateType::Scheduled),  // due exactly now
        add("work", 60, StateType::Scheduled), // not due yet
        add("work", -900, StateType::Running), // held
        add("work", -900, StateType::Completed), // done
        add("other", -600, StateType::Late),   // another queue
        add("other", -30, StateType::Scheduled),
    ];
    let mut launched = run_in(&d, "work", -30, 99, StateType::Scheduled);
    launched.infra = Some("process/local".parse().unwrap());
    for r in runs.iter().chain([&launched]) {
        s.insert_run(r).await.unwrap();
    }
    assert_eq!(
        s.count_due_runs("work", t0()).await.unwrap(),
        DueCounts { due: 4, late: 2 }
    );
    assert_eq!(
        s.count_due_runs("other", t0()).await.unwrap(),
        DueCounts { due: 2, late: 1 }
    );
    assert_eq!(
        s.count_due_runs("work", t0() + Duration::seconds(60))
            .await
            .unwrap(),
        DueCounts { due: 5, late: 2 }
    );
    assert_eq!(
        s.count_due_runs("nobody", t0()).await.unwrap(),
        DueCounts::default()
    );
}
