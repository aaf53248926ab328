//! Before/after comparisons: a planted 10% regression in one phase is found in that phase;
//! pure noise gets no verdict; environments that differ outside the declared fields are refused.

use crate::fixture::{noise, sweep, Point};
use shardsweep_analysis::compare::Change;
use shardsweep_analysis::report::compare_sweeps;
use shardsweep_analysis::{AnalysisError, CompareOptions, Verdict};

/// A sweep of two points, 40 steps, 2% noise seeded by `seed`; `slow_backward` scales the
/// backward phase of point `b`.
fn write_sweep(dir: &std::path::Path, seed: u64, slow_backward: f64, torch: &str) {
    for (name, nodes) in [("a", 1), ("b", 2)] {
        let mut p = Point::new(name, nodes, 40);
        let factor = if name == "b" { slow_backward } else { 1.0 };
        p.phases = Box::new(move |r, s| {
            let n = |k: u64| 1.0 + 0.02 * noise(seed * 10 + k, r, s);
            [0.01 * n(1), 0.1 * n(2), 0.2 * factor * n(3), 0.03 * n(4), 0.0]
        });
        p.waits = Box::new(move |r, s| {
            [
                0.02 * (1.0 + 0.02 * noise(seed * 10 + 5, r, s)),
                0.04 * (1.0 + 0.02 * noise(seed * 10 + 6, r, s)),
            ]
        });
        p.torch_version = torch.into();
        p.write(dir);
    }
}

#[test]
fn a_planted_regression_is_found_in_its_phase_and_noise_gets_no_verdict() {
    let (root, before) = sweep("before");
    write_sweep(&before, 1, 1.0, "2.13.0");
    let after = root.path().join("after");
    write_sweep(&after, 2, 1.10, "2.13.0");
    // The planted 10% of a phase that is half the step lengthens the step by 5%.
    let options = CompareOptions { min_effect: 0.02, ..Default::default() };
    let (comparison, files) =
        compare_sweeps(&before, &after, &root.path().join("out"), &options).unwrap();
    let verdict = |point: &str, phase: &str| {
        comparison
            .changes
            .iter()
            .find(|c| c.point == point && c.phase == phase)
            .unwrap_or_else(|| panic!("{point} {phase}"))
            .clone()
    };
    let backward = verdict("b", "backward");
    assert_eq!(backward.verdict, Verdict::Regressed, "{backward:?}");
    assert!(backward.ratio.contains(1.10) && backward.ratio.low > 1.05, "{backward:?}");
    assert_eq!(verdict("b", "step").verdict, Verdict::Regressed, "the step slows with it");
    let flagged: Vec<String> = comparison
        .changes
        .iter()
        .filter(|c| c.verdict.is_change())
        .map(|c| format!("{} {}", c.point, c.phase))
        .collect();
    assert_eq!(
        flagged,
        ["b backward", "b step"],
        "only the planted phase (and the step it lengthens)"
    );
    assert!(files.iter().any(|f| f.ends_with("comparison.svg")));
    let svg = std::fs::read_to_string(root.path().join("out/comparison.svg")).unwrap();
    assert!(
        svg.contains("b backward [regressed]")
            && svg.contains("95% interval")
            && svg.contains("unchanged")
    );

    // Two runs of the same system differ by noise only: no verdict anywhere.
    let again = root.path().join("again");
    write_sweep(&again, 3, 1.0, "2.13.0");
    let (noise_only, _) =
        compare_sweeps(&before, &again, &root.path().join("out2"), &CompareOptions::default())
            .unwrap();
    assert!(!noise_only.changes.is_empty());
    let verdicts: Vec<_> = noise_only.changes.iter().filter(|c| c.verdict.is_change()).collect();
    assert!(verdicts.is_empty(), "noise called a change: {verdicts:?}");
}

#[test]
fn environments_that_differ_outside_the_declared_fields_are_refused() {
    let (root, before) = sweep("old");
    write_sweep(&before, 1, 1.0, "2.13.0");
    let after = root.path().join("new");
    write_sweep(&after, 2, 1.0, "2.14.0");
    let out = root.path().join("out");
    match compare_sweeps(&before, &after, &out, &CompareOptions::default()) {
        Err(AnalysisError::EnvironmentDiffers(diff)) => {
            assert_eq!(diff, ["torch_version: \"2.13.0\" -> \"2.14.0\""])
        }
        other => panic!("compared anyway: {:?}", other.map(|c| c.0.environment)),
    }
    let declared = CompareOptions { declared: vec!["torch_version".into()], ..Default::default() };
    let (comparison, _) = compare_sweeps(&before, &after, &out, &declared).unwrap();
    assert_eq!(comparison.environment.len(), 1);
    assert_eq!(comparison.environment[0].change, Change::Declared);
    assert!(std::fs::read_to_string(out.join("comparison.md"))
        .unwrap()
        .contains("| torch_version | 2.13.0 | 2.14.0 | declared |"));
    // Job ids differ between any two runs and never count (SLURM_JOB_ID differs here).
    let forced = CompareOptions { allow_undeclared: true, ..Default::default() };
    let (flagged, _) = compare_sweeps(&before, &after, &out, &forced).unwrap();
    assert_eq!(flagged.environment[0].change, Change::Undeclared);
}

#[test]
fn launcher_bookkeeping_is_ignored_and_transport_settings_count() {
    let write = |dir: &std::path::Path, seed: u64, env: &[(&str, String)]| {
        for (name, nodes) in [("a", 1), ("b", 2)] {
            let mut p = Point::new(name, nodes, 40);
            p.phases = Box::new(move |r, s| {
                let n = |k: u64| 1.0 + 0.02 * noise(seed * 10 + k, r, s);
                [0.01 * n(1), 0.1 * n(2), 0.2 * n(3), 0.03 * n(4), 0.0]
            });
            p.env = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            p.write(dir);
        }
    };
    // What mpirun sets per run: job ids, session folders, the command line, PMIx endpoints.
    let bookkeeping = |job: &str| {
        vec![
            ("OMPI_MCA_ess_base_jobid", job.to_string()),
            ("OMPI_FILE_LOCATION", format!("/tmp/ompi.vm.0/pid.{job}/0/0")),
            ("OMPI_MCA_orte_hnp_uri", format!("{job}.0;tcp://10.0.0.1:3511")),
            ("OMPI_COMMAND", "shardsweep".to_string()),
            ("OMPI_ARGV", format!("worker results/s{job}/a")),
            ("OMPI_MCA_initial_wdir", format!("/home/u/run{job}")),
            ("PMIX_NAMESPACE", job.to_string()),
            ("PMIX_SERVER_URI4", format!("{job}.0;tcp4://127.0.0.1:4396")),
        ]
    };
    let (root, before) = sweep("first");
    write(&before, 1, &bookkeeping("4175"));
    let after = root.path().join("second");
    write(&after, 2, &bookkeeping("9931"));
    let out = root.path().join("out");
    let (same, _) = compare_sweeps(&before, &after, &out, &CompareOptions::default())
        .expect("the same sweep run twice is comparable");
    assert!(same.environment.is_empty(), "{:?}", same.environment);

    // A transport selection changes behaviour: refused unless declared.
    let mut tcp = bookkeeping("9932");
    tcp.push(("OMPI_MCA_btl", "tcp,self".into()));
    let changed = root.path().join("tcp");
    write(&changed, 2, &tcp);
    match compare_sweeps(&before, &changed, &out, &CompareOptions::default()) {
        Err(AnalysisError::EnvironmentDiffers(diff)) => {
            assert_eq!(diff, ["OMPI_MCA_btl: \"(unset)\" -> \"tcp,self\""])
        }
        other => panic!("compared anyway: {:?}", other.map(|c| c.0.environment)),
    }
}

/// One point `name` of 40 noisy steps (or `steps`, all warm-up when 2 or fewer).
fn one_point(dir: &std::path::Path, name: &str, steps: usize, seed: u64) {
    let mut p = Point::new(name, 1, steps);
    p.phases = Box::new(move |r, s| {
        let n = |k: u64| 1.0 + 0.02 * noise(seed * 10 + k, r, s);
        [0.01 * n(1), 0.1 * n(2), 0.2 * n(3), 0.03 * n(4), 0.0]
    });
    p.write(dir);
}

#[test]
fn sets_with_no_point_in_common_are_refused_naming_every_point_and_why() {
    let (root, before) = sweep("before");
    one_point(&before, "a", 40, 1);
    one_point(&before, "b", 2, 1);
    let after = root.path().join("after");
    one_point(&after, "b", 40, 2);
    one_point(&after, "c", 40, 2);
    let out = root.path().join("out");
    match compare_sweeps(&before, &after, &out, &CompareOptions::default()) {
        Err(AnalysisError::NothingCompared(why)) => assert_eq!(
            why,
            [
                "a: only in BEFORE",
                "b: before: no steady-state step (2 of 2 steps recorded, 2 warm-up)",
                "c: only in AFTER"
            ]
        ),
        other => panic!("compared: {:?}", other.map(|c| c.0.changes.len())),
    }
    assert!(!out.join("comparison.csv").exists(), "no empty table is written");

    // One side without any finished point: that side is named.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let error = compare_sweeps(&before, &empty, &out, &CompareOptions::default()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, AnalysisError::CompareSide { side: "AFTER", .. })
            && message.contains(&empty.display().to_string())
            && message.contains("no finished records"),
        "{message}"
    );
}

#[test]
fn points_missing_on_one_side_are_listed_beside_those_compared() {
    let (root, before) = sweep("before");
    one_point(&before, "a", 40, 1);
    one_point(&before, "b", 40, 1);
    let after = root.path().join("after");
    one_point(&after, "a", 40, 2);
    one_point(&after, "c", 40, 2);
    let out = root.path().join("out");
    let (comparison, _) =
        compare_sweeps(&before, &after, &out, &CompareOptions::default()).unwrap();
    assert!(comparison.changes.iter().all(|c| c.point == "a") && !comparison.changes.is_empty());
    assert_eq!(
        comparison.unmatched,
        [("b".to_string(), "only in BEFORE".to_string()), ("c".into(), "only in AFTER".into())]
    );
    let md = std::fs::read_to_string(out.join("comparison.md")).unwrap();
    let listed = md.split("## Not compared").nth(1).expect("a section for them");
    assert!(listed.contains("| b | only in BEFORE |") && listed.contains("| c | only in AFTER |"));
    assert!(!md.contains("NaN"), "{md}");
}

/// `points` points of pure noise (3% per phase), seeded by `seed`; every tenth point's
/// reduce-scatter waits are scaled by `slow_scatter`.
fn noisy_sweep(dir: &std::path::Path, points: usize, seed: u64, slow_scatter: f64) {
    for i in 0..points {
        let mut p = Point::new(&format!("p{i:02}"), 1 + (i % 4) as u32, 30);
        let factor = if i % 10 == 0 { slow_scatter } else { 1.0 };
        let k = seed * 1000 + i as u64 * 10;
        p.phases = Box::new(move |r, s| {
            let n = |j: u64| 1.0 + 0.03 * noise(k + j, r, s);
            [0.01 * n(1), 0.1 * n(2), 0.2 * n(3), 0.03 * n(4), 0.0]
        });
        p.waits = Box::new(move |r, s| {
            let n = |j: u64| 1.0 + 0.03 * noise(k + j, r, s);
            [0.02 * n(5), 0.04 * factor * n(6)]
        });
        p.write(dir);
    }
}

#[test]
fn the_false_discovery_rate_holds_over_a_whole_sweep_of_noise() {
    let (root, before) = sweep("before");
    noisy_sweep(&before, 40, 1, 1.0);
    let after = root.path().join("after");
    noisy_sweep(&after, 40, 2, 1.0);
    let (c, _) =
        compare_sweeps(&before, &after, &root.path().join("out"), &CompareOptions::default())
            .unwrap();
    let tests = c.changes.len();
    let raw = c.changes.iter().filter(|x| x.p_value < 0.05).count();
    assert!(tests >= 300, "{tests} tests");
    // Without the adjustment some of the hundreds of tests would come out "changed" by chance.
    assert!(raw > 0, "no raw p-value under 0.05 in {tests} tests: the test has no power to fail");
    let changed: Vec<_> = c.changes.iter().filter(|x| x.verdict.is_change()).collect();
    assert!(changed.is_empty(), "{} of {tests} called a change: {changed:?}", changed.len());
    assert!(!c.regressed() && c.findings.is_empty());
}

#[test]
fn a_slower_collective_is_found_where_it_is_and_the_parts_add_up_to_the_step() {
    let (root, before) = sweep("before");
    noisy_sweep(&before, 20, 1, 1.0);
    let after = root.path().join("after");
    noisy_sweep(&after, 20, 2, 2.0);
    let out = root.path().join("out");
    let (c, files) = compare_sweeps(&before, &after, &out, &CompareOptions::default()).unwrap();
    let verdict = |point: &str, phase: &str| {
        c.changes.iter().find(|x| x.point == point && x.phase == phase).unwrap().verdict
    };
    for slow in ["p00", "p10"] {
        assert_eq!(verdict(slow, "comm.reduce_scatter"), Verdict::Regressed);
        assert_eq!(verdict(slow, "step"), Verdict::Regressed);
        assert_eq!(verdict(slow, "backward"), Verdict::Indistinguishable, "{:?}", c.changes);
    }
    let steps: Vec<_> = c.changes.iter().filter(|x| x.phase == "step").collect();
    let unchanged = steps.iter().filter(|x| x.verdict == Verdict::Indistinguishable).count();
    assert_eq!(unchanged, 18, "{steps:?}");
    // The decomposition adds up to the step's change and puts it in the reduce-scatter.
    for d in &c.decompositions {
        let sum: f64 = d.parts.iter().map(|p| p.delta_s).sum();
        let delta = d.step_after_s - d.step_before_s;
        assert!((sum - delta).abs() <= 0.01 * delta.abs().max(1e-9), "{d:?}");
    }
    let d = c.decompositions.iter().find(|d| d.point == "p10").unwrap();
    assert_eq!(d.largest().unwrap().component, "exposed reduce_scatter", "{d:?}");
    // The collectives' bus bandwidth fell for the reduce-scatter, and the finding says so.
    let finding = c.findings.iter().find(|f| f.contains("(p10)")).expect("a finding for p10");
    assert!(
        finding.contains("slower")
            && finding.contains("exposed reduce_scatter")
            && finding.contains("bus bandwidth fell"),
        "{finding}"
    );
    assert_eq!(c.findings.len(), 2, "{:?}", c.findings);
    // A CI reads the JUnit file: the two regressed points fail (their step, their exposed
    // communication and its reduce-scatter part), nothing else does.
    let junit = std::fs::read_to_string(out.join("comparison.junit.xml")).unwrap();
    assert_eq!(junit.matches("<failure").count(), 6, "{junit}");
    assert!(junit.contains("type=\"regressed\"") && junit.contains("classname=\"p10\""));
    for stem in ["changes", "scaling-before-after", "comparison"] {
        assert!(files.iter().any(|f| f.ends_with(format!("{stem}.svg"))), "{stem}");
    }
    let heat = std::fs::read_to_string(out.join("changes.svg")).unwrap();
    assert!(heat.contains("full_shard mb4") && heat.contains('='), "a labelled heat map");
}

#[test]
fn a_point_that_runs_out_of_memory_after_is_a_regression_and_a_decision_change() {
    let (root, before) = sweep("before");
    one_point(&before, "a", 40, 1);
    let after = root.path().join("after");
    let mut p = Point::new("a", 1, 40);
    p.outcome = shardsweep_records::Outcome::Oom;
    p.write(&after);
    one_point(&before, "b", 40, 1);
    one_point(&after, "b", 40, 2);
    let (c, _) =
        compare_sweeps(&before, &after, &root.path().join("out"), &CompareOptions::default())
            .unwrap();
    let outcome = c.changes.iter().find(|x| x.phase == "outcome").expect("an outcome change");
    assert_eq!((outcome.point.as_str(), outcome.verdict), ("a", Verdict::Regressed));
    assert_eq!(outcome.reason, "ok before, oom after");
    assert!(c.regressed());
    assert_eq!(c.outcomes.len(), 1);
}

#[test]
fn libraries_and_drivers_are_part_of_the_environment_and_placement_is_not_a_change() {
    use shardsweep_records::{Fingerprint, LoadedLibrary};
    let write = |dir: &std::path::Path, rccl: &str, seed: u64| {
        let mut p = Point::new("a", 1, 40);
        p.phases = Box::new(move |r, s| {
            let n = |k: u64| 1.0 + 0.02 * noise(seed * 10 + k, r, s);
            [0.01 * n(1), 0.1 * n(2), 0.2 * n(3), 0.03 * n(4), 0.0]
        });
        p.fingerprint = Fingerprint {
            libraries: vec![LoadedLibrary {
                name: "librccl.so".into(),
                path: format!("/opt/rocm-6/lib/librccl.so.{rccl}"),
                version: Some(rccl.into()),
                size_bytes: 1,
            }],
            ..Default::default()
        };
        p.write(dir);
    };
    let (root, before) = sweep("before");
    write(&before, "2.18.3", 1);
    let after = root.path().join("after");
    write(&after, "2.20.5", 2);
    let out = root.path().join("out");
    match compare_sweeps(&before, &after, &out, &CompareOptions::default()) {
        Err(AnalysisError::EnvironmentDiffers(diff)) => {
            assert_eq!(diff.len(), 1);
            assert!(
                diff[0].starts_with(
                    "library librccl.so: \"2.18.3 (/opt/rocm-6/lib/librccl.so.2.18.3)\""
                ),
                "{diff:?}"
            );
        }
        other => panic!("compared anyway: {:?}", other.map(|c| c.0.environment)),
    }
    let declared =
        CompareOptions { declared: vec!["library librccl*".into()], ..Default::default() };
    let (c, _) = compare_sweeps(&before, &after, &out, &declared).unwrap();
    assert_eq!(c.environment.len(), 1);
    assert_eq!(c.environment[0].change, Change::Declared);
}
