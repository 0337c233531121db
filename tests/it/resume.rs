//! Durability through the real binary: kill -9 and Ctrl-C mid-run, then rerun the same command;
//! failed events exported and re-sent; the ledger refusing to be shared or misused.

use std::process::Stdio;

use crate::util::*;
use savvy_replay_fake::{Receiver, ReceiverConfig, generate_bookings};
use std::path::PathBuf;

fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("child still running") as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pid, sig) };
}

fn spawn(args: &[String]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn savvy-replay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_rerun_resends_at_most_the_in_flight_events() {
    const N: usize = 600;
    const CONCURRENCY: usize = 8;
    let (api, rcv, dir) = scene(generate_bookings(N, 21), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--rate", "400", "--concurrency", "8", "--json"].map(String::from));

    let child = spawn(&args);
    wait_for(20, || rcv.stats().accepted >= 150).await;
    signal(&child, libc::SIGKILL);
    let first = child.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), None, "killed by a signal");
    let delivered_before = rcv.stats().unique_accepted;
    assert!((delivered_before as usize) < N, "the kill came too late to test anything");

    let second = run_bin(&args).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let s = summary(&second);
    let skipped = s["skipped"].as_u64().unwrap();
    assert!(
        skipped <= delivered_before && skipped + CONCURRENCY as u64 >= delivered_before,
        "rerun skipped {skipped}, receiver had {delivered_before} before the kill"
    );
    assert_eq!(s["delivered"].as_u64().unwrap() + skipped, N as u64);

    let stats = rcv.stats();
    assert_eq!(stats.unique_accepted, N as u64, "every event delivered");
    assert!(stats.duplicates <= CONCURRENCY as u64, "{} duplicates", stats.duplicates);

    // A third run has nothing left to do.
    let before = rcv.stats().requests;
    let third = run_bin(&args).await;
    assert_eq!(third.status.code(), Some(0));
    let s = summary(&third);
    assert_eq!((s["skipped"].as_u64(), s["delivered"].as_u64()), (Some(N as u64), Some(0)));
    assert_eq!(rcv.stats().requests, before, "the third run sent nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_saves_progress_exits_130_and_the_rerun_completes() {
    const N: usize = 400;
    let (api, rcv, dir) = scene(generate_bookings(N, 22), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--rate", "300", "--json"].map(String::from));

    let child = spawn(&args);
    wait_for(20, || rcv.stats().accepted >= 100).await;
    signal(&child, libc::SIGINT);
    let first = child.wait_with_output().await.unwrap();

    assert_eq!(first.status.code(), Some(130), "{}", text(&first.stderr));
    let s = summary(&first);
    assert_eq!(s["interrupted"], true);
    let delivered_first = s["delivered"].as_u64().unwrap();
    assert!(delivered_first >= 100 && delivered_first < N as u64);
    assert_eq!(delivered_first, rcv.stats().unique_accepted, "every request that got through was recorded");
    let stderr = text(&first.stderr);
    assert!(stderr.contains("Interrupted after") && stderr.contains("run the same command again"), "{stderr}");

    let second = run_bin(&args).await;
    assert_eq!(second.status.code(), Some(0));
    let s = summary(&second);
    assert_eq!(s["skipped"].as_u64(), Some(delivered_first));
    assert_eq!(rcv.stats().unique_accepted, N as u64);
    assert_eq!(rcv.stats().duplicates, 0, "a graceful stop re-sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_events_are_exported_and_only_failed_resends_exactly_those() {
    let events = generate_bookings(60, 23);
    let rejected: Vec<String> = events.iter().skip(10).step_by(7).map(|e| id_of(e)).collect();
    let api = api(events.clone(), vec![]).await;
    let rcv = receiver(ReceiverConfig { reject_ids: rejected.clone(), ..signed_receiver() }).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db");
    let mut args = run_args(&api, &rcv, &ledger);
    args.extend(["--rate", "0", "--json"].map(String::from));

    let first = run_bin(&args).await;
    assert_eq!(first.status.code(), Some(1));
    assert_eq!(summary(&first)["failed"].as_u64(), Some(rejected.len() as u64));

    // `status` shows the failures with their last answer.
    let st = run_bin(&["status".into(), "--ledger".into(), ledger.display().to_string()]).await;
    let st_out = text(&st.stdout);
    assert_eq!(st.status.code(), Some(0));
    assert!(st_out.contains(&format!("delivered {}", 60 - rejected.len())), "{st_out}");
    assert!(st_out.contains(&format!("failed {}", rejected.len())), "{st_out}");
    assert!(st_out.contains("HTTP 422") && st_out.contains(&rejected[0]), "{st_out}");
    let st = run_bin(&["status", "--json", "--ledger", ledger.to_str().unwrap()].map(String::from)).await;
    let targets: Vec<serde_json::Value> = text(&st.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["webhook_url"], rcv.url());
    assert_eq!(targets[0]["delivered"], 60 - rejected.len());
    assert_eq!(targets[0]["failed"], rejected.len());
    assert_eq!(targets[0]["open"][0]["status"], "failed");
    assert_eq!(targets[0]["open"][0]["last_status"], 422);

    // `failed` exports exactly those events, byte-identical.
    let file = dir.path().join("failed.ndjson");
    let f =
        run_bin(&["failed", "--ledger", ledger.to_str().unwrap(), "--out", file.to_str().unwrap()].map(String::from))
            .await;
    assert_eq!(f.status.code(), Some(0), "{}", text(&f.stderr));
    let exported = std::fs::read_to_string(&file).unwrap();
    let mut got: Vec<&str> = exported.lines().collect();
    let mut want: Vec<&str> = events.iter().filter(|e| rejected.contains(&id_of(e))).map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // Once the receiver accepts them, --only-failed sends exactly those.
    rcv.set_reject_ids(vec![]);
    let before = rcv.deliveries().len();
    let mut only = args.clone();
    only.push("--only-failed".into());
    let second = run_bin(&only).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let mut resent: Vec<String> = rcv.deliveries()[before..].iter().map(event_id).collect();
    resent.sort();
    let mut want_ids = rejected.clone();
    want_ids.sort();
    assert_eq!(resent, want_ids);

    // And the failed file also feeds `run --input` (here: to another webhook).
    let other = receiver(signed_receiver()).await;
    let out = run_bin(&input_args(&file, &other, &ledger)).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(other.stats().unique_accepted, rejected.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_on_one_ledger_the_second_is_refused() {
    let (api, rcv, dir) = scene(generate_bookings(200, 24), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--rate", "20"].map(String::from));

    let first = spawn(&args);
    wait_for(20, || rcv.stats().requests >= 1).await;
    let second = run_bin(&args).await;
    assert_eq!(second.status.code(), Some(2));
    let stderr = text(&second.stderr);
    assert!(stderr.contains("in use by another savvy-replay run") && stderr.contains("pid"), "{stderr}");
    signal(&first, libc::SIGINT);
    let first = first.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), Some(130));
}

/// The lock follows the real file: a symlinked path to the same ledger is the same ledger.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replay_through_a_symlinked_ledger_is_refused() {
    let (api, rcv, dir) = scene(generate_bookings(200, 26), vec![]).await;
    std::fs::create_dir(dir.path().join("l")).unwrap();
    std::os::unix::fs::symlink("ledger.db", dir.path().join("l").join("alias.db")).unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l").join("ledger.db"));
    args.extend(["--rate", "20"].map(String::from));
    let mut alias = run_args(&api, &rcv, &dir.path().join("l").join("alias.db"));
    alias.extend(["--rate", "20"].map(String::from));

    let first = spawn(&args);
    wait_for(20, || rcv.stats().requests >= 1).await;
    let second = run_bin(&alias).await;
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("in use by another savvy-replay run") && stderr.contains("alias.db"), "{stderr}");
    signal(&first, libc::SIGINT);
    let first = first.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_ledgers_are_refused_with_exit_2_and_left_alone() {
    let (api, rcv, dir) = scene(generate_bookings(5, 25), vec![]).await;

    // Not a database.
    let corrupt = dir.path().join("corrupt.db");
    let junk = b"definitely not an sqlite database\n".repeat(200);
    std::fs::write(&corrupt, &junk).unwrap();
    let out = run_bin(&run_args(&api, &rcv, &corrupt)).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a savvy-replay ledger"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&corrupt).unwrap(), junk, "nothing overwritten");

    // A path that cannot be created (its parent is a file; root ignores permission bits).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = run_bin(&run_args(&api, &rcv, &file.join("ledger.db"))).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--ledger"), "{}", text(&out.stderr));

    // A read-only location.
    let out = run_bin(&run_args(&api, &rcv, std::path::Path::new("/proc/savvy-replay/ledger.db"))).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().requests, 0, "nothing sent without a working ledger");

    // `status` on a missing ledger says so; on a corrupt one it fails clearly.
    let out = run_bin(&["status".into(), "--ledger".into(), dir.path().join("none.db").display().to_string()]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("No ledger"));
    let out = run_bin(&["status".into(), "--ledger".into(), corrupt.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_ignores_earlier_outcomes_and_sends_everything_again() {
    let (api, rcv, dir) = scene(generate_bookings(25, 26), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--rate", "0", "--json"].map(String::from));

    assert_eq!(summary(&run_bin(&args).await)["delivered"], 25);
    let rerun = summary(&run_bin(&args).await);
    assert_eq!((rerun["skipped"].as_u64(), rerun["delivered"].as_u64()), (Some(25), Some(0)));

    args.push("--fresh".into());
    let fresh = run_bin(&args).await;
    assert_eq!(fresh.status.code(), Some(0));
    let s = summary(&fresh);
    assert_eq!((s["skipped"].as_u64(), s["delivered"].as_u64()), (Some(0), Some(25)));
    let stats = rcv.stats();
    assert_eq!((stats.unique_accepted, stats.duplicates), (25, 25), "every event sent exactly twice");
    // The same envelope ids go out again, so a receiver that dedupes on them stays idempotent.
    let mut ids: Vec<String> = rcv.deliveries().iter().map(|d| d.envelope_id.clone().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25);
}

/// Ctrl-C while the API has not answered yet (the webhook lookup, or the dry run's token check)
/// is an interruption like any other: exit 130, not a source error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_before_the_api_answers_exits_130() {
    // An "API" that accepts connections and never answers.
    let (base, accepted) = silent_server().await;
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    for extra in [None, Some("--dry-run")] {
        let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
        let ledger = dir.path().join("l.db").display().to_string();
        let mut args: Vec<String> =
            ["run", "--api-base", &base, "--webhook-url", &rcv.url(), "--ledger", &ledger].map(String::from).into();
        args.extend(extra.map(String::from));
        let child = spawn(&args);
        wait_for(20, || accepted.load(std::sync::atomic::Ordering::SeqCst) > before).await;
        signal(&child, libc::SIGINT);
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(130), "{extra:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("interrupted"), "{}", text(&out.stderr));
    }
    assert_eq!(rcv.stats().requests, 0);
}

/// `input_args` to `url` instead of the receiver's own spelling, with the JSON summary.
fn to_url(
    input: &std::path::Path,
    rcv: &savvy_replay_fake::Receiver,
    ledger: &std::path::Path,
    url: &str,
) -> Vec<String> {
    let mut args = input_args(input, rcv, ledger);
    let at = args.iter().position(|a| a == "--webhook-url").unwrap() + 1;
    args[at] = url.to_owned();
    args.push("--json".into());
    args
}

/// `n` generated events (`seed`) in a file, delivered to a new receiver with a new ledger: the
/// directory holding both, the receiver, the ledger and the file.
async fn delivered_once(n: usize, seed: u64) -> (tempfile::TempDir, Receiver, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(signed_receiver()).await;
    let (ledger, input) = (dir.path().join("ledger.db"), dir.path().join("events.ndjson"));
    std::fs::write(&input, generate_bookings(n, seed).join("\n") + "\n").unwrap();
    let first = run_bin(&to_url(&input, &rcv, &ledger, &rcv.url())).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    (dir, rcv, ledger, input)
}

/// The webhook lookup takes `…/webhook/` for `…/webhook`; so does the ledger: a dry run and a run
/// to the other spelling skip everything, and `status` shows one target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_is_the_same_target_for_the_ledger() {
    let (_dir, rcv, ledger, input) = delivered_once(12, 21).await;
    let slashed = format!("{}/", rcv.url());
    let mut dry = to_url(&input, &rcv, &ledger, &slashed);
    dry.push("--dry-run".into());
    let out = run_bin(&dry).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["skipped"], 12, "{}", text(&out.stderr));
    let out = run_bin(&to_url(&input, &rcv, &ledger, &slashed)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["skipped"].as_u64(), s["attempts"].as_u64()), (Some(12), Some(0)), "{s}");
    assert_eq!(rcv.stats().requests, 12, "nothing sent twice");
    let status = run_bin(&["status".into(), "--ledger".into(), ledger.display().to_string()]).await;
    let status = text(&status.stdout);
    assert_eq!(status.matches("delivered 12").count(), 1, "{status}");
}

/// A schema-2 ledger written by the release before trailing slashes stopped counting keys a run
/// to `…/webhook/` as `…/webhook/`: a run to either spelling still finds its outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_kept_under_a_trailing_slash_by_an_earlier_release_are_found() {
    for (earlier, now) in [("/", ""), ("/", "/")] {
        let (_dir, rcv, ledger, input) = delivered_once(5, 22).await;
        // What the release wrote for `run --webhook-url …/webhook/`.
        let db = rusqlite::Connection::open(&ledger).unwrap();
        let n = db.execute("UPDATE targets SET webhook_url = webhook_url || ?1", [earlier]).unwrap();
        assert_eq!(n, 1);
        drop(db);
        let out = run_bin(&to_url(&input, &rcv, &ledger, &format!("{}{now}", rcv.url()))).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(summary(&out)["skipped"], 5, "{now:?}: {}", text(&out.stderr));
        assert_eq!(rcv.stats().requests, 5, "nothing sent twice");
    }
}

/// A dry run records nothing, so `status` does not list its target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_is_not_a_target_in_status() {
    let (_dir, rcv, ledger, input) = delivered_once(3, 23).await;
    let mut dry = to_url(&input, &rcv, &ledger, "https://elsewhere.example.com/hook");
    dry.push("--dry-run".into());
    let out = run_bin(&dry).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = run_bin(&["status".into(), "--ledger".into(), ledger.display().to_string()]).await;
    let stdout = text(&status.stdout);
    assert!(!stdout.contains("elsewhere"), "{stdout}");
    assert!(stdout.contains("delivered 3"), "{stdout}");
}
