//! The command line itself, through the real binary: usage errors that say what to write, help
//! with worked examples that fit 80 columns, shell completions that really complete, and repeated
//! flags.

use crate::util::*;
use savvy_replay_fake::generate_bookings;

#[tokio::test]
async fn usage_errors_exit_2_with_a_message_that_says_what_to_write() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--webhook-url", "https://h.example.com", "--rate", "fast"], "3000/m"),
        (&["run", "--webhook-url", "not a url"], "--webhook-url"),
        (&["run", "--webhook-url", "https://h.example.com", "--frobnicate"], "--frobnicate"),
        (&["run", "--webhook-url", "https://h.example.com", "--api-base", "http://api.savvycal.com"], "plain http"),
        (&["run", "--webhook-url", "https://h.example.com", "--page-size", "500"], "1 to 100"),
        (&["run", "--webhook-url", "https://h.example.com", "--timeout", "soon"], "30s"),
        (&["run", "--webhook-url", "https://h.example.com", "--created-before", "yesterday"], "RFC 3339"),
        (&["run", "--webhook-url", "https://h.example.com", "-H", "no-colon"], "Name: value"),
        (&["run", "--webhook-url", "https://h.example.com", "--config", "/nonexistent/c.toml"], "config file"),
    ];
    for (args, hint) in cases {
        let out = bin_output(args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
        assert!(!stderr.contains(TOKEN) && !stderr.contains(SECRET));
    }
    let out = tokio::process::Command::new(bin())
        .args(["run", "--webhook-url", "https://h.example.com"])
        .env_remove("SAVVYCAL_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--token is required"));
}

#[tokio::test]
async fn completions_and_help() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bin_output(&["completions", shell]).await;
        assert_eq!(out.status.code(), Some(0));
        let script = text(&out.stdout);
        assert!(script.contains("savvy-replay"), "{shell}");
        assert!(script.contains("webhook-url") && script.contains("no-dry-run"), "{shell} completes run's flags");
    }
    for cmd in ["run", "export", "status", "failed", "demo", "sink", "completions"] {
        let out = bin_output(&[cmd, "--help"]).await;
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        assert!(text(&out.stdout).contains("Example"), "{cmd} --help has a worked example");
    }
}

/// Bash really completes a subcommand's flags (clap-rs/clap#6421 breaks this for a hyphenated
/// binary name unless the script is corrected).
#[tokio::test]
async fn bash_completes_run_flags() {
    if std::process::Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("bash is not installed: skipping the bash completion test");
        return;
    }
    let script = bin_output(&["completions", "bash"]).await;
    assert_eq!(script.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("savvy-replay.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    let probe = format!(
        "source '{}'\nCOMP_WORDS=(savvy-replay run --webh)\nCOMP_CWORD=2\nCOMP_LINE='savvy-replay run --webh'\n\
         COMP_POINT=${{#COMP_LINE}}\n_savvy__replay savvy-replay --webh run\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = tokio::process::Command::new("bash").args(["--norc", "-c", &probe]).output().await.unwrap();
    let got = text(&out.stdout);
    assert!(got.lines().any(|l| l == "--webhook-url"), "{got}\n{}", text(&out.stderr));
    assert!(got.lines().any(|l| l == "--webhook-id"), "{got}");
    assert!(!got.lines().any(|l| l == "--token"), "only what matches --webh: {got}");
}

/// Wrapper scripts append flags: a repeated flag's last value wins instead of an error, and a
/// repeatable one (-H) keeps every value.
#[tokio::test]
async fn a_repeated_flag_takes_its_last_value() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, generate_bookings(2, 31).join("\n") + "\n").unwrap();
    let (input, ledger) = (input.display().to_string(), dir.path().join("l.db").display().to_string());
    let out = bin_output(&[
        "run",
        "--input",
        &input,
        "--webhook-url",
        "https://h.example.com/hook",
        "--ledger",
        &ledger,
        "--dry-run",
        "--rate",
        "5",
        "--concurrency",
        "3",
        "--rate",
        "10",
        "--concurrency",
        "4",
        "-H",
        "X-One: 1",
        "-H",
        "X-Two: 2",
    ])
    .await;
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("--rate 10") && all.contains("--concurrency 4"), "{all}");
    assert!(all.contains("x-one: 1") || all.contains("X-One: 1"), "{all}");
    assert!(all.contains("x-two: 2") || all.contains("X-Two: 2"), "{all}");
}

/// `--help` as an 80-column terminal gets it (clap wraps to `COLUMNS` when it finds no terminal).
async fn help_at_80(cmd: &str) -> String {
    let out = tokio::process::Command::new(bin())
        .args([cmd, "--help"])
        .env("COLUMNS", "80")
        .output()
        .await
        .expect("run savvy-replay");
    assert_eq!(out.status.code(), Some(0), "{cmd}");
    text(&out.stdout)
}

#[tokio::test]
async fn help_examples_are_whole_lines_and_flags_sit_under_their_own_heading() {
    for cmd in ["run", "export", "failed"] {
        let help = help_at_80(cmd).await;
        let examples = &help[help.find("Example").expect("examples")..];
        // Every command line of an example is as written: none was broken by clap's wrapping.
        for line in examples.lines().filter(|l| l.trim_start().starts_with("savvy-replay ")) {
            assert!(line.starts_with("  savvy-replay "), "{cmd}: {line:?} in\n{examples}");
        }
        for line in examples.lines() {
            assert!(line.chars().count() <= 80, "{cmd}: {line:?}");
        }
    }
    let run = help_at_80("run").await;
    assert!(run.lines().any(|l| l.contains("--webhook-id wh_… --created-before none")), "{run}");

    // --no-json is --json's twin: right after it, not under the receiver's flags.
    let demo = help_at_80("demo").await;
    let limits = demo.find("Receiver limits:").expect("the receiver's heading");
    let no_json = demo.find("--no-json").expect("--no-json");
    assert!(no_json < limits, "{demo}");
}
