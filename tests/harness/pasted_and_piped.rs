//! What the commands print: a reader that goes away early ends a command quietly, output that
//! cannot be written is an error, and a command line printed for pasting runs as printed,
//! whatever the paths hold.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{manifest, one_point};

/// An experiment of 1,600 points: `plan` prints far more than a pipe holds (64 KiB).
fn many_points(dir: &Path) -> std::path::PathBuf {
    let batches: Vec<String> = (1..=200).map(|b| b.to_string()).collect();
    let text = format!(
        "name = \"many\"\n[axes]\nmodel = [\"vit-tiny\", \"vit-mini\"]\nstrategy = [\"no_shard\"]\n\
         nodes = [1, 2, 4, 8]\nranks_per_node = [2]\nmicro_batch = [{}]\n\
         [settings]\nsteps = 4\nwarmup_steps = 1\n",
        batches.join(", ")
    );
    let path = dir.join("many.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let experiment = many_points(dir.path());
    let exe = env!("CARGO_BIN_EXE_shardsweep");
    for (command, reader) in
        [("plan", "head -n 3"), ("plan", "true"), ("predict --system local", "head -c 100")]
    {
        // A real pipe whose reader exits early: bash reports each side's status.
        let line = format!(
            "set -o pipefail; \"$0\" {command} \"$1\" | {reader} >/dev/null; echo \"${{PIPESTATUS[@]}}\""
        );
        let out = Command::new("bash")
            .args(["-c", &line, exe])
            .arg(&experiment)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.trim(), "0 0", "{command} | {reader}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    }
    // Read to the end, the same command prints every point.
    let whole = Command::new(exe).arg("plan").arg(&experiment).output().unwrap();
    assert!(whole.status.success() && whole.stdout.len() > 1 << 16, "{}", whole.stdout.len());
}

#[test]
fn output_that_cannot_be_written_is_an_error_not_silence() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let experiment = many_points(dir.path());
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .arg("plan")
        .arg(&experiment)
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout") && !stderr.contains("panicked"), "{stderr}");
}

/// Waits until rank 0 of the point in `dir` has recorded a step in a spool that `pid` (if
/// given) did not write; returns the writer's pid.
fn wait_for_a_step(dir: &Path, not_pid: Option<i64>) -> i64 {
    let spool = dir.join("ranks/rank-00000.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "rank 0 never got going in {}", dir.display());
        let text = std::fs::read_to_string(&spool).unwrap_or_default();
        if text.lines().any(|l| l.contains("\"type\":\"step\"")) {
            let start: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            let pid = start["pid"].as_i64().unwrap();
            if Some(pid) != not_pid {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_resume_line_of_an_interrupted_run_works_pasted_whatever_the_paths_hold() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Spaces, both quotes, `$`, a backtick, a glob and non-ASCII in every path printed.
    let odd = root.path().join("it's a \"run\" $HOME `id` *  été");
    std::fs::create_dir_all(&odd).unwrap();
    let experiment = odd.join("exp $1.toml");
    let results = odd.join("rés ults");
    let text = one_point("pasted", 100000) + "[launch]\ntimeout_s = 120\n";
    std::fs::write(&experiment, text).unwrap();
    let point = results.join("pasted/vit-tiny-no_shard-n1x2-mb2");

    let child = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .arg("run")
        .arg(&experiment)
        .arg("--results")
        .arg(&results)
        .arg("--no-analysis")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = wait_for_a_step(&point, None);
    // SAFETY: signalling the runner this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    let line = stderr
        .lines()
        .skip_while(|l| !l.contains("Resume with:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume line: {stderr}"))
        .to_string();
    assert!(line.contains("--no-analysis") && !line.contains("--force"), "{line}");

    // Pasted into a shell from another folder, it runs the same sweep again: the point's
    // new attempt starts in the same results folder.
    let pasted = Command::new("sh")
        .args(["-c", &line])
        .current_dir(root.path())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for_a_step(&point, Some(first));
    // SAFETY: signalling the process group this test started (sh and the runner).
    unsafe { libc::killpg(pasted.id() as i32, libc::SIGTERM) };
    let again = pasted.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("interrupted by SIGTERM"), "{line}\n{stderr}");
    assert_eq!(manifest(&point)["restarts"], 1, "{stderr}");
    assert!(results.join("pasted/.attempts").is_dir(), "the first attempt kept aside");
}
