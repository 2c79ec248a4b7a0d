//! [`Ferry`], the use cases over the ports, and its [`Settings`]. The use cases themselves live
//! by aggregate: `queues`, `deployments`, `flow_runs` (the user's), `agent_runs` (the agent's),
//! `bundles`, `tick`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ferry_core::clock::Clock;
use ferry_core::infra::InfraKind;
use ferry_core::launch::TaskLauncher;
use ferry_core::ports::{CodeStore, LogSink, Store};

/// The system clock (the only place the app layer reads time).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Tunables of the control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A waiting run this far past its scheduled time is marked Late.
    pub late_after: Duration,
    /// Most deployments one tick extends (the rest wait for the next tick).
    pub tick_batch: usize,
    /// How long an agent's claim lasts without a heartbeat; the reaper crashes (or retries)
    /// runs whose lease expired.
    pub lease: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            late_after: Duration::seconds(30),
            tick_batch: 1000,
            lease: Duration::seconds(30),
        }
    }
}

/// The use cases, over the ports. Built once ([`Ferry::new`], then [`Ferry::with_settings`]
/// and [`Ferry::with_on_run_created`]) and not changed afterwards; clones share the ports.
#[derive(Clone)]
pub struct Ferry {
    /// Runs, deployments, queues.
    pub store: Arc<dyn Store>,
    /// Code bundles.
    pub code: Arc<dyn CodeStore>,
    /// Run logs.
    pub logs: Arc<dyn LogSink>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    on_run_created: Option<Arc<dyn Fn() + Send + Sync>>,
    launchers: BTreeMap<InfraKind, Arc<dyn TaskLauncher>>,
    launch_env: BTreeMap<String, String>,
}

impl Ferry {
    /// Builds the use cases over the given ports, with the default [`Settings`].
    pub fn new(
        store: Arc<dyn Store>,
        code: Arc<dyn CodeStore>,
        logs: Arc<dyn LogSink>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            code,
            logs,
            clock,
            settings: Settings::default(),
            on_run_created: None,
            launchers: BTreeMap::new(),
            launch_env: BTreeMap::new(),
        }
    }

    /// These use cases launching runs of `kind` profiles with `launcher` (the tick's
    /// pre-launch, dispatch, and the supervision of launched runs). Runs of a kind without a
    /// launcher here are left to a process that has one.
    #[must_use]
    pub fn with_launcher(mut self, kind: InfraKind, launcher: Arc<dyn TaskLauncher>) -> Self {
        self.launchers.insert(kind, launcher);
        self
    }

    /// These use cases giving every launched task `env` (how to reach this backend: table,
    /// bucket, region; never secrets).
    #[must_use]
    pub fn with_launch_env(self, launch_env: BTreeMap<String, String>) -> Self {
        Self { launch_env, ..self }
    }

    /// The launcher of `kind`, if this process has one.
    pub(crate) fn launcher(&self, kind: InfraKind) -> Option<&Arc<dyn TaskLauncher>> {
        self.launchers.get(&kind)
    }

    /// The environment every launched task gets.
    pub(crate) fn launch_env(&self) -> &BTreeMap<String, String> {
        &self.launch_env
    }

    /// These use cases with `settings` instead of the current ones.
    #[must_use]
    pub fn with_settings(self, settings: Settings) -> Self {
        Self { settings, ..self }
    }

    /// These use cases calling `notify` after each run they create (an in-process agent wakes
    /// up at once).
    #[must_use]
    pub fn with_on_run_created(self, notify: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            on_run_created: Some(Arc::new(notify)),
            ..self
        }
    }

    /// The tunables in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Tells whoever asked ([`Ferry::with_on_run_created`]) that a run was created.
    pub(crate) fn notify_run_created(&self) {
        if let Some(notify) = &self.on_run_created {
            notify();
        }
    }
}
