//! `ferry agent install KIND`: prints a service definition that runs `ferry agent start` with
//! the given queues and options, this very binary and this environment's Ferry settings —
//! a systemd unit, a supervisor program, a launchd job — or, for `fargate`, the command that
//! deploys the agent stack (`ferry aws deploy --agent-stack`). The definition goes to stdout
//! (`> file`), how to install it to stderr.
//!
//! Secrets are never written: the service reads them from an env file (`--env-file`, default
//! FERRY_HOME/agent.env), and the notes say which of them are set here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::args::{AgentArgs, InstallArgs, InstallKind, Via};

/// Variables carried into the service as they are set here: Ferry's settings, where AWS
/// credentials come from (never the keys), and where programs are found.
const CARRIED: [&str; 20] = [
    "FERRY_BACKEND",
    "FERRY_API_URL",
    "FERRY_API_AUTH",
    "FERRY_TABLE",
    "FERRY_BUCKET",
    "FERRY_PYTHON",
    "FERRY_LOG",
    "FERRY_LOG_FORMAT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_EC2_METADATA_DISABLED",
    "HOME",
    "PATH",
];

/// Secret variables: when set here, the notes name them and the env file they belong in;
/// their values are never printed.
const SECRETS: [&str; 4] = [
    "FERRY_API_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Time a stopping agent gets beyond its shutdown and kill graces to record the final states.
const STOP_MARGIN: Duration = Duration::from_secs(15);

/// The service name: the systemd unit and supervisor program `ferry-agent`, the launchd label
/// `dev.ferry.agent`.
const SERVICE: &str = "ferry-agent";
const LAUNCHD_LABEL: &str = "dev.ferry.agent";

/// Everything a service definition says, read from the flags and the environment.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// The absolute path of the `ferry` binary.
    pub exe: PathBuf,
    /// The directory the agent runs in (deployments without a bundle run there).
    pub dir: PathBuf,
    /// The variables the service sets, FERRY_HOME first.
    pub env: Vec<(String, String)>,
    /// The secret variables set here (names only).
    pub secrets: Vec<String>,
    /// Where the service reads secrets from.
    pub env_file: PathBuf,
    /// The user the service runs as (systemd, supervisor), when known.
    pub user: Option<String>,
    /// The arguments after the binary: `agent start -q ...`.
    pub args: Vec<String>,
    /// How long a stop may take before the service manager kills what is left: longer than the
    /// agent's shutdown grace and kill grace together.
    pub stop_timeout: u64,
    /// The queues served.
    pub queues: Vec<String>,
}

/// `ferry agent install KIND`.
pub(super) fn run(args: &InstallArgs) -> Result<()> {
    if args.kind == InstallKind::Fargate {
        let command = fargate(args)?;
        eprintln!("{}", fargate_notes(&args.start.agent.queues));
        println!("{command}");
        return Ok(());
    }
    let service = Service::from_env(args)?;
    let text = match args.kind {
        InstallKind::Systemd => systemd(&service)?,
        InstallKind::Supervisor => supervisor(&service)?,
        InstallKind::Launchd => launchd(&service)?,
        InstallKind::Fargate => unreachable!("handled above"),
    };
    eprintln!("{}", notes(args.kind, &service));
    print!("{text}");
    Ok(())
}

impl Service {
    /// The service of these flags in this process's environment.
    fn from_env(args: &InstallArgs) -> Result<Self> {
        let exe = std::env::current_exe()
            .context("locating the ferry binary (the service runs this very binary)")?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let dir = std::env::current_dir().context("reading the current directory")?;
        let home = absolute(&crate::server::ferry_home()?, &dir);
        let env_file = args
            .env_file
            .as_deref()
            .map(|f| absolute(f, &dir))
            .unwrap_or_else(|| home.join("agent.env"));
        let mut env = vec![("FERRY_HOME".to_owned(), home.display().to_string())];
        for name in CARRIED {
            if let Some(v) = std::env::var_os(name).filter(|v| !v.is_empty()) {
                let v = v.into_string().map_err(|_| {
                    anyhow::anyhow!("{name} is not UTF-8: set it to a UTF-8 value, or unset it")
                })?;
                env.push((name.to_owned(), v));
            }
        }
        let secrets = SECRETS
            .iter()
            .filter(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
            .map(|n| (*n).to_owned())
            .collect();
        let user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        let mut start = start_args(&args.start.agent, args.start.via);
        if let Some(wait) = args.start.long_poll {
            start.extend(["--long-poll".into(), seconds(wait)]);
        }
        Ok(Self {
            exe,
            dir,
            env,
            secrets,
            env_file,
            user,
            args: start,
            stop_timeout: stop_timeout(&args.start.agent),
            queues: args.start.agent.queues.clone(),
        })
    }

    /// Refuses values a service file cannot carry (a line break, a control character).
    fn check(&self) -> Result<()> {
        for (k, v) in &self.env {
            if v.chars().any(char::is_control) {
                bail!("{k} holds a control character (a line break?): a service file cannot carry it; fix the variable, or unset it");
            }
        }
        for (what, p) in [
            ("the ferry binary's path", &self.exe),
            ("the current directory", &self.dir),
            ("--env-file", &self.env_file),
        ] {
            let s = p.to_str().with_context(|| {
                format!(
                    "{what} ({}) is not UTF-8: a service file cannot carry it",
                    p.display()
                )
            })?;
            if s.chars().any(char::is_control) {
                bail!("{what} ({s:?}) holds a control character: a service file cannot carry it");
            }
        }
        Ok(())
    }
}

/// `path` made absolute against `dir`.
fn absolute(path: &Path, dir: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// A duration as `agent start` reads it back: seconds (`30`, `0.5`).
fn seconds(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// `agent start` with every option spelled out (a service states what it runs).
pub(crate) fn start_args(a: &AgentArgs, via: Option<Via>) -> Vec<String> {
    let mut out: Vec<String> = vec!["agent".into(), "start".into()];
    for q in &a.queues {
        out.extend(["-q".into(), q.clone()]);
    }
    if let Some(via) = via {
        let v = match via {
            Via::Api => "api",
            Via::Direct => "direct",
        };
        out.extend(["--via".into(), v.into()]);
    }
    out.extend(["--limit".into(), a.limit.to_string()]);
    for (flag, d) in [
        ("--poll-interval", a.poll_interval),
        ("--prefetch", a.prefetch),
        ("--lease", a.lease),
        ("--kill-grace", a.kill_grace),
        ("--shutdown-grace", a.shutdown_grace),
    ] {
        out.extend([flag.into(), seconds(d)]);
    }
    if let Some(name) = &a.name {
        out.extend(["--name".into(), name.clone()]);
    }
    out
}

/// On SIGTERM the agent lets running runs go on for its shutdown grace, then stops them
/// (SIGTERM, SIGKILL after the kill grace) and records them: the service manager waits that
/// long and a margin before it kills anything itself.
fn stop_timeout(a: &AgentArgs) -> u64 {
    (a.shutdown_grace + a.kill_grace + STOP_MARGIN)
        .as_secs_f64()
        .ceil() as u64
}

/// `s` as one word for `sh`: unchanged when it is plain, else in single quotes.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,@+-%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `sh` script of supervisor and launchd: export the env file's variables when it is
/// there, then become the agent (`exec`, so the service's SIGTERM reaches the agent itself).
fn sh_script(s: &Service) -> String {
    let file = sh_quote(&s.env_file.display().to_string());
    let command: Vec<String> = std::iter::once(s.exe.display().to_string())
        .chain(s.args.iter().cloned())
        .map(|a| sh_quote(&a))
        .collect();
    format!(
        "set -a; [ ! -r {file} ] || . {file}; set +a; exec {}",
        command.join(" ")
    )
}

/// The systemd unit.
pub(crate) fn systemd(s: &Service) -> Result<String> {
    s.check()?;
    // Specifiers (`%`) are expanded in every setting, `$` in ExecStart.
    let spec = |v: &str| v.replace('%', "%%");
    let word = |v: &str| {
        let v = spec(v).replace('$', "$$");
        if !v.is_empty()
            && !v
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
        {
            v
        } else {
            format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
        }
    };
    let mut out = String::new();
    out.push_str(&format!(
        "# The Ferry agent as a systemd service, printed by `ferry agent install systemd`.\n\
         # Secrets (FERRY_API_TOKEN, AWS keys) go in {} (KEY=VALUE lines, chmod 600), never here.\n\
         [Unit]\n\
         Description=Ferry agent (work queues: {})\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n",
        s.env_file.display(),
        s.queues.join(", ")
    ));
    if let Some(user) = &s.user {
        out.push_str(&format!("User={}\n", spec(user)));
    }
    out.push_str(&format!(
        "WorkingDirectory={}\n",
        spec(&s.dir.display().to_string())
    ));
    for (k, v) in &s.env {
        let kv = format!("{k}={}", spec(v));
        out.push_str(&format!(
            "Environment=\"{}\"\n",
            kv.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    out.push_str(&format!(
        "EnvironmentFile=-{}\n",
        spec(&s.env_file.display().to_string())
    ));
    let command: Vec<String> = std::iter::once(s.exe.display().to_string())
        .chain(s.args.iter().cloned())
        .map(|a| word(&a))
        .collect();
    out.push_str(&format!("ExecStart={}\n", command.join(" ")));
    out.push_str(&format!(
        "Restart=on-failure\n\
         RestartSec=5s\n\
         # SIGTERM to the agent only: it stops claiming, lets running flows finish (its shutdown\n\
         # grace), stops the rest and records them; whatever is left after the timeout is killed.\n\
         KillSignal=SIGTERM\n\
         KillMode=mixed\n\
         TimeoutStopSec={}s\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         SyslogIdentifier={SERVICE}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        s.stop_timeout
    ));
    Ok(out)
}

/// The supervisor program (supervisord's INI).
pub(crate) fn supervisor(s: &Service) -> Result<String> {
    s.check()?;
    // supervisord expands `%(name)s` in its values: a literal `%` is `%%`.
    let spec = |v: &str| v.replace('%', "%%");
    for (k, v) in &s.env {
        if v.contains('"') {
            bail!("{k} holds a double quote, which supervisor's environment= cannot carry: fix the variable, or unset it");
        }
    }
    let script = sh_script(s);
    let command = format!(
        "/bin/sh -c \"{}\"",
        spec(&script).replace('\\', "\\\\").replace('"', "\\\"")
    );
    let env: Vec<String> = s
        .env
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", spec(v)))
        .collect();
    let mut out = format!(
        "; The Ferry agent as a supervisor program, printed by `ferry agent install supervisor`.\n\
         ; Secrets (FERRY_API_TOKEN, AWS keys) go in {} (KEY=VALUE lines, chmod 600), never here.\n\
         [program:{SERVICE}]\n\
         command={command}\n\
         directory={}\n\
         environment={}\n",
        s.env_file.display(),
        spec(&s.dir.display().to_string()),
        env.join(",")
    );
    if let Some(user) = &s.user {
        out.push_str(&format!("user={}\n", spec(user)));
    }
    out.push_str(&format!(
        "autostart=true\n\
         ; restarted when it exits with anything but 0 (it exits 0 only when stopped)\n\
         autorestart=unexpected\n\
         exitcodes=0\n\
         startsecs=5\n\
         ; SIGTERM to the agent only (its flows run in process groups of their own): it stops\n\
         ; claiming, lets running flows finish, stops the rest and records them.\n\
         stopsignal=TERM\n\
         stopwaitsecs={}\n\
         stopasgroup=false\n\
         killasgroup=false\n\
         redirect_stderr=true\n\
         stdout_logfile=/var/log/supervisor/{SERVICE}.log\n\
         stdout_logfile_maxbytes=50MB\n\
         stdout_logfile_backups=10\n",
        s.stop_timeout
    ));
    Ok(out)
}

/// `s` escaped for XML text.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The launchd job (a LaunchAgent plist).
pub(crate) fn launchd(s: &Service) -> Result<String> {
    s.check()?;
    let home = s
        .env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| v.clone())
        .context("HOME is not set: launchd's log files go to ~/Library/Logs; set HOME")?;
    let log = Path::new(&home)
        .join("Library/Logs")
        .join(format!("{SERVICE}.log"));
    let mut env = String::new();
    for (k, v) in &s.env {
        env.push_str(&format!(
            "    <key>{}</key>\n    <string>{}</string>\n",
            xml(k),
            xml(v)
        ));
    }
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- The Ferry agent as a launchd job, printed by `ferry agent install launchd`.
     Secrets (FERRY_API_TOKEN, AWS keys) go in the env file the script reads (KEY=VALUE lines,
     chmod 600), never here. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>/bin/sh</string>
    <string>-c</string>
    <string>{script}</string>
  </array>
  <key>WorkingDirectory</key>
  <string>{dir}</string>
  <key>EnvironmentVariables</key>
  <dict>
{env}  </dict>
  <key>RunAtLoad</key>
  <true/>
  <!-- restarted when it exits with anything but 0 (it exits 0 only when stopped) -->
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>5</integer>
  <!-- seconds between launchd's SIGTERM and its SIGKILL: the agent lets running flows finish,
       stops the rest and records them first -->
  <key>ExitTimeOut</key>
  <integer>{stop}</integer>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#,
        script = xml(&sh_script(s)),
        dir = xml(&s.dir.display().to_string()),
        stop = s.stop_timeout,
        log = xml(&log.display().to_string()),
    ))
}

/// How to install what was printed, for stderr.
fn notes(kind: InstallKind, s: &Service) -> String {
    let mut out = match kind {
        InstallKind::Systemd => format!(
            "Install it:\n  \
             ferry agent install systemd ... | sudo tee /etc/systemd/system/{SERVICE}.service\n  \
             sudo systemctl daemon-reload && sudo systemctl enable --now {SERVICE}\n  \
             journalctl -u {SERVICE} -f     # its logs\n  \
             sudo systemctl stop {SERVICE}  # SIGTERM: running flows finish (up to {}s)\n",
            s.stop_timeout
        ),
        InstallKind::Supervisor => format!(
            "Install it:\n  \
             ferry agent install supervisor ... | sudo tee /etc/supervisor/conf.d/{SERVICE}.conf\n  \
             sudo supervisorctl reread && sudo supervisorctl update\n  \
             sudo supervisorctl tail -f {SERVICE}  # its logs (/var/log/supervisor/{SERVICE}.log)\n  \
             sudo supervisorctl stop {SERVICE}     # SIGTERM: running flows finish (up to {}s)\n",
            s.stop_timeout
        ),
        InstallKind::Launchd => format!(
            "Install it (macOS):\n  \
             ferry agent install launchd ... > ~/Library/LaunchAgents/{LAUNCHD_LABEL}.plist\n  \
             launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/{LAUNCHD_LABEL}.plist\n  \
             tail -f ~/Library/Logs/{SERVICE}.log   # its logs\n  \
             launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}  # SIGTERM: running flows finish (up to {}s)\n",
            s.stop_timeout
        ),
        InstallKind::Fargate => String::new(),
    };
    if s.secrets.is_empty() {
        out.push_str(&format!(
            "Secrets: none is set here; a token (FERRY_API_TOKEN=...) or AWS keys go in {} (chmod 600), read at start.",
            s.env_file.display()
        ));
    } else {
        out.push_str(&format!(
            "Secrets: {} set here and not printed: write them to {} as KEY=VALUE lines (chmod 600), read at start.",
            s.secrets.join(", "),
            s.env_file.display()
        ));
    }
    out
}

/// The agent options `agent start` has by default, to tell which ones a user gave.
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    agent: AgentArgs,
}

/// `ferry aws deploy --agent-stack` for these queues: the agent service on ECS Fargate is the
/// agent stack (infra/agent.yaml), which that command deploys. Options the stack does not take
/// are refused, naming what sets them there.
pub(crate) fn fargate(args: &InstallArgs) -> Result<String> {
    let a = &args.start.agent;
    let d = Defaults::parse_from(["ferry"]).agent;
    let fixed = [
        ("--limit", a.limit != d.limit, "the stack's Limit parameter"),
        (
            "--poll-interval",
            a.poll_interval != d.poll_interval,
            "infra/agent.yaml's command",
        ),
        (
            "--prefetch",
            a.prefetch != d.prefetch,
            "infra/agent.yaml's command",
        ),
        ("--lease", a.lease != d.lease, "infra/agent.yaml's command"),
        (
            "--kill-grace",
            a.kill_grace != d.kill_grace,
            "infra/agent.yaml's command",
        ),
        (
            "--shutdown-grace",
            a.shutdown_grace != d.shutdown_grace,
            "infra/agent.yaml's command",
        ),
        ("--name", a.name.is_some(), "ECS (each task's host name)"),
        (
            "--via api",
            args.start.via == Some(Via::Api),
            "the stack: its agents reach the table directly",
        ),
        (
            "--long-poll",
            args.start.long_poll.is_some(),
            "the stack: its agents reach the table directly",
        ),
        (
            "--env-file",
            args.env_file.is_some(),
            "the stack: its tasks get AWS access from their task role",
        ),
    ];
    if let Some((flag, _, set_by)) = fixed.iter().find(|(_, given, _)| *given) {
        bail!("{flag} does not apply to `agent install fargate` (set by {set_by}): the agent service on Fargate takes only its work queues (-q)");
    }
    let mut words: Vec<String> = [
        "ferry",
        "aws",
        "deploy",
        "--stack",
        "ferry",
        "--agent-stack",
    ]
    .map(String::from)
    .to_vec();
    for q in &a.queues {
        words.extend(["--queue".into(), q.clone()]);
    }
    words.extend(
        [
            "--image",
            "IMAGE_URI",
            "--subnet",
            "SUBNET_ID",
            "--security-group",
            "SECURITY_GROUP_ID",
        ]
        .map(String::from),
    );
    Ok(words.join(" "))
}

fn fargate_notes(queues: &[String]) -> String {
    format!(
        "The always-on agent service on ECS Fargate is the agent stack (infra/agent.yaml, deployed as STACK-agent), serving {}.\n\
         Run the command below where you run `ferry aws deploy` (a Ferry checkout with AWS credentials), with the same stack\n\
         name, image, subnets and security groups as the control plane (replace IMAGE_URI, SUBNET_ID, SECURITY_GROUP_ID;\n\
         repeat --subnet/--security-group for more): the control plane is left as it is, the agent stack created or updated.\n\
         See docs/fargate.md.",
        queues.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{AgentCmd, AwsCmd, Cli, Command};

    fn install(argv: &[&str]) -> InstallArgs {
        let cli =
            Cli::try_parse_from(["ferry", "agent", "install"].iter().chain(argv).copied()).unwrap();
        match cli.command {
            Command::Agent(AgentCmd::Install(a)) => a,
            other => panic!("not agent install: {other:?}"),
        }
    }

    #[test]
    fn the_fargate_command_is_the_agent_stack_deploy_with_the_queues() {
        let cmd = fargate(&install(&["fargate", "-q", "prod", "-q", "etl"])).unwrap();
        let cli = Cli::try_parse_from(cmd.split(' ')).unwrap();
        let Command::Aws(AwsCmd::Deploy(d)) = cli.command else {
            panic!("not `aws deploy`: {cmd}");
        };
        assert!(d.agent_stack, "{cmd}");
        assert_eq!(d.queues, vec!["prod", "etl"]);
    }

    #[test]
    fn fargate_refuses_options_its_stack_sets_itself() {
        for argv in [
            &["fargate", "--limit", "3"][..],
            &["fargate", "--via", "api"],
            &["fargate", "--name", "a1"],
            &["fargate", "--env-file", "x.env"],
        ] {
            let e = fargate(&install(argv)).unwrap_err().to_string();
            assert!(
                e.contains(argv[1]) && e.contains("does not apply"),
                "{argv:?}: {e}"
            );
        }
    }

    #[test]
    fn start_args_spell_out_every_option_and_parse_back() {
        let a = install(&[
            "systemd",
            "-q",
            "prod",
            "--limit",
            "3",
            "--poll-interval",
            "500ms",
            "--via",
            "direct",
            "--name",
            "etl 1",
        ]);
        let args = start_args(&a.start.agent, a.start.via);
        let cli = Cli::try_parse_from(std::iter::once("ferry".to_owned()).chain(args)).unwrap();
        let Command::Agent(AgentCmd::Start(s)) = cli.command else {
            panic!("not agent start");
        };
        assert_eq!(s.agent.queues, vec!["prod"]);
        assert_eq!(s.agent.limit, 3);
        assert_eq!(s.agent.poll_interval, Duration::from_millis(500));
        assert_eq!(s.agent.name.as_deref(), Some("etl 1"));
        assert_eq!(s.via, Some(Via::Direct));
        assert_eq!(stop_timeout(&a.start.agent), 30 + 10 + 15);
    }

    #[test]
    fn sh_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("/usr/bin/ferry"), "/usr/bin/ferry");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
