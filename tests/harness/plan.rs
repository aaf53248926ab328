//! Experiment files and the matrix: expansion, zip, exclude, rejections, and every error path.

use std::path::Path;

use shardsweep::plan::{expand, Experiment, ExperimentError, Machine, Rejection, Strategy, Timing};

const MACHINE: Machine = Machine { memory_bytes: 24 << 30, per_rank: false };

fn parse(text: &str) -> Result<Experiment, ExperimentError> {
    Experiment::parse(text, Path::new("experiments/test.toml"))
}

fn with_axes(axes: &str, extra: &str) -> String {
    format!("name = \"t\"\n{extra}\n[axes]\n{axes}\n[settings]\nsteps = 4\nwarmup_steps = 1\n")
}

const AXES: &str = r#"
model = ["vit-tiny", "vit-mini"]
strategy = ["no_shard"]
nodes = [1, 2]
ranks_per_node = [2]
micro_batch = [4, 8]
"#;

/// All problems of a file, as "key: message" lines.
fn problems(text: &str) -> Vec<String> {
    let error = parse(text).expect_err("the file has problems");
    assert_eq!(error.file, Path::new("experiments/test.toml"));
    error.problems.iter().map(|p| p.to_string()).collect()
}

fn assert_reports(text: &str, expected: &[&str]) {
    let found = problems(text);
    for needle in expected {
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "expected a problem containing {needle:?}; got:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn cartesian_product_in_axis_order() {
    let plan = expand(&parse(&with_axes(AXES, "")).unwrap(), &MACHINE);
    let ids: Vec<&str> = plan.points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "vit-tiny-no_shard-n1x2-mb4",
            "vit-tiny-no_shard-n1x2-mb8",
            "vit-tiny-no_shard-n2x2-mb4",
            "vit-tiny-no_shard-n2x2-mb8",
            "vit-mini-no_shard-n1x2-mb4",
            "vit-mini-no_shard-n1x2-mb8",
            "vit-mini-no_shard-n2x2-mb4",
            "vit-mini-no_shard-n2x2-mb8",
        ]
    );
    assert!(plan.rejected.is_empty());
    let p = &plan.points[3];
    assert_eq!((p.world_size(), p.global_batch()), (4, 32));
    assert_eq!(p.model.name, "vit-tiny");
    assert_eq!(p.strategy, Strategy::NoShard);
}

#[test]
fn zip_groups_advance_together() {
    let text = with_axes(AXES, r#"zip = [["nodes", "micro_batch"]]"#);
    let plan = expand(&parse(&text).unwrap(), &MACHINE);
    let ids: Vec<&str> = plan.points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "vit-tiny-no_shard-n1x2-mb4",
            "vit-tiny-no_shard-n2x2-mb8",
            "vit-mini-no_shard-n1x2-mb4",
            "vit-mini-no_shard-n2x2-mb8"
        ]
    );
}

#[test]
fn zipped_axes_may_repeat_values_but_not_whole_combinations() {
    let axes = AXES
        .replace("nodes = [1, 2]", "nodes = [1, 1, 2]")
        .replace("micro_batch = [4, 8]", "micro_batch = [4, 8, 8]");
    let plan =
        expand(&parse(&with_axes(&axes, r#"zip = [["nodes", "micro_batch"]]"#)).unwrap(), &MACHINE);
    assert_eq!(plan.points.len(), 6);
    let repeated = axes.replace("[1, 1, 2]", "[1, 1, 1]").replace("[4, 8, 8]", "[4, 8, 4]");
    assert_reports(
        &with_axes(&repeated, r#"zip = [["nodes", "micro_batch"]]"#),
        &["zip[0] = [1, 4]: duplicate combination at position 2"],
    );
}

#[test]
fn exclude_rules_drop_matching_points_with_a_reason() {
    let text = format!("{}\n[[exclude]]\nmodel = \"vit-mini\"\nmicro_batch = [4]\n[[exclude]]\nnodes = 2\nmodel = [\"vit-tiny\"]\n", with_axes(AXES, ""));
    let plan = expand(&parse(&text).unwrap(), &MACHINE);
    let ids: Vec<&str> = plan.points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "vit-tiny-no_shard-n1x2-mb4",
            "vit-tiny-no_shard-n1x2-mb8",
            "vit-mini-no_shard-n1x2-mb8",
            "vit-mini-no_shard-n2x2-mb8"
        ]
    );
    let reasons: Vec<(&str, &str)> =
        plan.rejected.iter().map(|r| (r.id.as_str(), r.reason.as_str())).collect();
    assert!(reasons.contains(&("vit-mini-no_shard-n2x2-mb4", "excluded by rule exclude[0]")));
    assert!(reasons.contains(&("vit-tiny-no_shard-n2x2-mb8", "excluded by rule exclude[1]")));
    assert_eq!(reasons.len(), 4);
    // The user's own choice: logged as such, not warned about.
    assert!(plan.rejected.iter().all(|r| r.kind == Rejection::Excluded));
}

#[test]
fn points_that_cannot_run_are_rejected_with_the_reason() {
    let axes = r#"
model = ["vit-tiny", "vit-15b"]
strategy = ["no_shard", "full_shard"]
nodes = [1]
ranks_per_node = [2]
micro_batch = [32]
"#;
    let plan = expand(&parse(&with_axes(axes, "")).unwrap(), &MACHINE);
    assert_eq!(plan.points.len(), 2);
    assert_eq!(plan.points[0].id, "vit-tiny-no_shard-n1x2-mb32");
    let reason =
        |id: &str| plan.rejected.iter().find(|r| r.id == id).map(|r| r.reason.clone()).unwrap();
    let memory = reason("vit-15b-no_shard-n1x2-mb32");
    assert!(memory.contains("does not fit") && memory.contains("GiB per rank"), "{memory}");
    assert!(reason("vit-15b-full_shard-n1x2-mb32").contains("does not fit"));
    // Sharding over both ranks halves the model states: vit-tiny fits either way.
    assert!(plan.rejected.iter().all(|r| !r.id.starts_with("vit-tiny")));
}

#[test]
fn image_size_override_applies_to_every_point() {
    let text = with_axes(AXES, "").replace("warmup_steps = 1", "warmup_steps = 1\nimage_size = 64");
    let plan = expand(&parse(&text).unwrap(), &MACHINE);
    assert!(plan.points.iter().all(|p| p.model.image_size == 64));
}

#[test]
fn digest_changes_with_any_setting() {
    let a = expand(&parse(&with_axes(AXES, "")).unwrap(), &MACHINE).points[0].clone();
    let b =
        expand(&parse(&with_axes(AXES, "").replace("steps = 4", "steps = 5")).unwrap(), &MACHINE)
            .points[0]
            .clone();
    assert_eq!(a.id, b.id);
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), a.clone().digest());
}

/// The digest of one fixed point, pinned: the first point of `experiments/local-smoke.toml`.
/// A finished point is kept only while its digest is unchanged, so a change to what a point
/// serialises (a new field without `skip_serializing_if`, a renamed one, another default)
/// re-runs every finished sweep. Changing this literal must be deliberate, and said so in the
/// change that does it (as must a change to the experiment file's first point).
#[test]
fn the_digest_of_a_fixed_point_is_pinned() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/local-smoke.toml");
    let plan = expand(&Experiment::load(&file).unwrap(), &MACHINE);
    let point = &plan.points[0];
    assert_eq!(point.id, "vit-mini-no_shard-n1x2-mb4");
    assert_eq!(point.digest(), "3bf5ec19c4ce5381");
}

#[test]
fn syntax_errors_name_the_line() {
    assert_reports("name = \"x\"\n[axes\n", &["(syntax)", "line 2"]);
}

#[test]
fn missing_sections_and_name_are_reported_together() {
    assert_reports(
        "description = \"nothing else\"\n",
        &["name: missing", "axes: missing section [axes]", "settings: missing section [settings]"],
    );
}

#[test]
fn unknown_keys_are_reported_at_every_level() {
    let text = with_axes(&format!("{AXES}gpus = [8]"), "colour = \"blue\"")
        .replace("warmup_steps = 1", "warmup_steps = 1\nstepz = 3");
    assert_reports(
        &text,
        &[
            "colour = \"blue\": unknown key",
            "axes.gpus = [8]: unknown field `gpus`",
            "settings.stepz = 3: unknown field `stepz`",
        ],
    );
}

#[test]
fn type_errors_name_key_value_and_expected_type() {
    let axes = AXES
        .replace("micro_batch = [4, 8]", "micro_batch = [4, \"big\"]")
        .replace("[\"no_shard\"]", "[\"no_shard\", \"fully_sharded\"]");
    let text = with_axes(&axes, "").replace("steps = 4", "steps = 4\ndevice = \"tpu\"\nseed = -1");
    let found = problems(&text);
    assert_reports(
        &text,
        &[
            "axes.micro_batch[1] = \"big\": invalid type: string \"big\", expected u32",
            "axes.strategy[1] = \"fully_sharded\": unknown variant `fully_sharded`",
            "settings.device = \"tpu\": unknown variant `tpu`, expected `cpu` or `cuda`",
            "settings.seed = -1",
        ],
    );
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let axes = r#"
model = ["vit-tiny", "vit-giant"]
strategy = ["no_shard", "no_shard"]
nodes = [1, 0]
ranks_per_node = []
micro_batch = [4]
"#;
    let extra = r#"zip = [["nodes", "micro_batch"], ["speed"], ["nodes", "model"]]"#;
    let text = format!(
        "{}\n[optimizer]\nbeta1 = 1.5\nbase_lr = 0.0\n[launch]\ntimeout_s = 0\n[[exclude]]\nmodel = \"vit-huge\"\ncolour = 1\n[[exclude]]\n",
        with_axes(axes, extra)
    )
    .replace("name = \"t\"", "name = \"../escape\"")
    .replace("warmup_steps = 1", "warmup_steps = 4\nimage_size = 30\nthreads_per_rank = 0");
    let expected = [
        "name = \"../escape\": use letters",
        "axes.model[1] = \"vit-giant\": unknown model; known: vit-tiny",
        "axes.strategy[1] = \"no_shard\": duplicate value",
        "axes.nodes[1] = 0: must be at least 1",
        "axes.ranks_per_node = []: an axis needs at least one value",
        "settings.image_size = 30: must be a positive multiple of vit-tiny's patch size 8",
        "settings.warmup_steps = 4: must be less than settings.steps (4)",
        "settings.threads_per_rank = 0: must be at least 1",
        "optimizer.beta1 = 1.5: out of range",
        "optimizer.base_lr = 0.0: out of range",
        "launch.timeout_s = 0: must be at least 1",
        "zip[0] = [\"nodes\", \"micro_batch\"]: zipped axes need equal lengths (nodes has 2, micro_batch has 1)",
        "zip[1] = [\"speed\"]: a zip group needs at least two axes",
        "zip[1] = [\"speed\"]: unknown axis \"speed\"",
        "zip[2] = [\"nodes\", \"model\"]: axis \"nodes\" is already zipped",
        "exclude[0].model = \"vit-huge\": not a value of axes.model, so this rule can never match",
        "exclude[0].colour = 1: unknown axis",
        "exclude[1] = {  }: an empty rule would exclude every point",
    ];
    assert_reports(&text, &expected);
    assert_eq!(problems(&text).len(), expected.len(), "{:#?}", problems(&text));
}

#[test]
fn error_message_names_the_file_and_lists_every_problem() {
    let error =
        parse(&with_axes(&AXES.replace("[1, 2]", "[0, 2]"), "").replace("steps = 4", "steps = 0"))
            .unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("experiments/test.toml: 3 problems"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("  - ")).count(), 3, "{text}");
}

#[test]
fn shipped_experiments_are_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let experiment = Experiment::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !expand(&experiment, &MACHINE).points.is_empty() || path.ends_with("paper.toml"),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn hybrid_shard_groups_must_divide_the_world_and_may_span_nodes() {
    let axes = r#"
model = ["vit-tiny"]
strategy = ["hybrid_shard", "full_shard"]
shard_group = [0, 3, 4, 8]
nodes = [2]
ranks_per_node = [2]
micro_batch = [2]
"#;
    let plan = expand(&parse(&with_axes(axes, "")).unwrap(), &MACHINE);
    let ids: Vec<&str> = plan.points.iter().map(|p| p.id.as_str()).collect();
    // 0 means one node (2 ranks); 4 spans both nodes; full_shard ignores shard_group.
    assert_eq!(
        ids,
        [
            "vit-tiny-hybrid_shard-sg2-n2x2-mb2",
            "vit-tiny-hybrid_shard-sg4-n2x2-mb2",
            "vit-tiny-full_shard-n2x2-mb2"
        ]
    );
    assert_eq!(plan.points[1].replicas(), 1);
    assert_eq!(plan.points[2].parallel.shard_group, 4);
    let reasons: Vec<(&str, &str)> =
        plan.rejected.iter().map(|r| (r.id.as_str(), r.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (
                "vit-tiny-hybrid_shard-sg3-n2x2-mb2",
                "shard group of 3 ranks does not divide the world of 4 ranks"
            ),
            (
                "vit-tiny-hybrid_shard-sg8-n2x2-mb2",
                "shard group of 8 ranks does not divide the world of 4 ranks"
            ),
        ]
    );
}

#[test]
fn bf16_reductions_are_rejected_on_mpi_with_the_reason_and_planned_on_gloo() {
    let axes = AXES.to_string() + "reduce_dtype = [\"bf16\"]\n";
    let plan = expand(&parse(&with_axes(&axes, "")).unwrap(), &MACHINE);
    assert!(plan.points.is_empty());
    assert!(plan
        .rejected
        .iter()
        .all(|r| r.reason.contains("MPI reduces fp32 only") && r.id.ends_with("-rbf16")));
    // Gloo sums bf16: the same points are planned there.
    let gloo = with_axes(&axes, "").replace("[settings]\n", "[settings]\nbackend = \"gloo\"\n");
    let plan = expand(&parse(&gloo).unwrap(), &MACHINE);
    assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
    assert!(!plan.points.is_empty() && plan.points.iter().all(|p| p.id.ends_with("-rbf16-gloo")));
}

#[test]
fn fault_rules_plant_a_fault_in_matching_points_and_are_validated() {
    let text = format!(
        "{}\n[[fault]]\nkind = \"crash\"\nat_step = 2\nmodel = \"vit-mini\"\nmicro_batch = 8\n",
        with_axes(AXES, "")
    );
    let plan = expand(&parse(&text).unwrap(), &MACHINE);
    let faulty: Vec<&str> =
        plan.points.iter().filter(|p| p.fault.is_some()).map(|p| p.id.as_str()).collect();
    assert_eq!(faulty, ["vit-mini-no_shard-n1x2-mb8", "vit-mini-no_shard-n2x2-mb8"]);
    let bad = format!("{}\n[[fault]]\nkind = \"explode\"\n[[fault]]\nkind = \"hang\"\nat_step = 1\ncolour = \"red\"\n", with_axes(AXES, ""));
    assert_reports(
        &bad,
        &[
            "fault[0].kind = \"explode\": must be \"crash\", \"nan_loss\" or \"hang\"",
            "fault[1].colour = \"red\": unknown axis",
        ],
    );
}

/// A ViT-22B-like shape (Dehghani et al. 2023: width 6144, depth 48, MLP 24576, 48 heads,
/// patch 14) with MAE's default decoder.
const VIT_22B: &str = r#"
[models.vit-22b]
width = 6144
depth = 48
mlp = 24576
heads = 48
patch = 14
image_size = 224
"#;

#[test]
fn custom_models_plan_like_presets_and_are_rejected_on_memory_with_the_reason() {
    let axes = r#"
model = ["vit-22b", "vit-tiny"]
strategy = ["no_shard", "full_shard"]
nodes = [16]
ranks_per_node = [8]
micro_batch = [4]
"#;
    let experiment = parse(&with_axes(axes, VIT_22B)).unwrap();
    // A 64 GiB device per rank: sharded over 128 ranks the model states fit, replicated not.
    let gcd = Machine { memory_bytes: 64 << 30, per_rank: true };
    let plan = expand(&experiment, &gcd);
    let ids: Vec<&str> = plan.points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "vit-22b-full_shard-n16x8-mb4",
            "vit-tiny-no_shard-n16x8-mb4",
            "vit-tiny-full_shard-n16x8-mb4"
        ]
    );
    let model = &plan.points[0].model;
    assert_eq!((model.width, model.depth, model.mlp, model.heads), (6144, 48, 24576, 48));
    assert_eq!((model.decoder_width, model.decoder_depth, model.decoder_mlp), (512, 8, 2048));
    let billions = model.encoder_params() as f64 / 1e9;
    assert!((21.5..22.0).contains(&billions), "{billions}");
    let reason = &plan.rejected[0];
    assert_eq!(reason.id, "vit-22b-no_shard-n16x8-mb4");
    assert!(reason.reason.contains("does not fit"), "{}", reason.reason);
    // On a small shared-memory machine no sharding makes it fit.
    let small = expand(&experiment, &MACHINE);
    assert!(small.points.iter().all(|p| p.model.name == "vit-tiny"));
    assert_eq!(small.rejected.len(), 2);
    assert!(small.rejected.iter().all(|r| r.reason.contains("does not fit")));
}

#[test]
fn custom_model_defaults_and_image_size_override() {
    let models = "[models.wide-decoder]\nwidth = 64\ndepth = 2\nheads = 4\npatch = 8\nimage_size = 32\ndecoder_width = 128\ndecoder_heads = 8\nmask_ratio = 0.5\n";
    let axes = AXES.replace("\"vit-mini\"", "\"wide-decoder\"");
    let plan = expand(&parse(&with_axes(&axes, models)).unwrap(), &MACHINE);
    let p = plan.points.iter().find(|p| p.model.name == "wide-decoder").unwrap();
    assert_eq!(p.id, "wide-decoder-no_shard-n1x2-mb4");
    let m = &p.model;
    assert_eq!((m.mlp, m.decoder_mlp, m.decoder_depth, m.channels), (256, 512, 8, 3));
    assert_eq!((m.mask_ratio, m.visible_patches()), (0.5, 8));
    // settings.image_size applies to custom models too, and is checked against their patch.
    let odd = with_axes(&axes, &models.replace("patch = 8", "patch = 16").replace("= 32", "= 64"))
        .replace("warmup_steps = 1", "warmup_steps = 1\nimage_size = 40");
    assert_reports(
        &odd,
        &["settings.image_size = 40: must be a positive multiple of wide-decoder's patch size 16"],
    );
}

#[test]
fn custom_models_that_cannot_work_are_rejected_naming_key_and_value() {
    let models = r#"
[models.vit-base]
width = 64
depth = 1
heads = 4
patch = 8
image_size = 32
[models.odd]
width = 100
depth = 2
heads = 3
patch = 7
image_size = 32
decoder_width = 30
decoder_heads = 4
mask_ratio = 1.0
[models.typo]
width = 64
depth = 2
heads = 4
patch = 8
image_size = 32
decoder_dpeth = 2
[models.zero]
width = 0
depth = 2
heads = 4
patch = 8
image_size = 32
"#;
    let axes = AXES.replace("\"vit-mini\"", "\"odd\", \"vit-giant\"");
    let expected = [
        "models.vit-base = \"vit-base\": a preset has this name",
        "models.odd.width = 100: must be divisible by its 3 heads",
        "models.odd.decoder_width = 30: must be divisible by its 4 heads",
        "models.odd.decoder_width = 30: must be a multiple of 4",
        "models.odd.image_size = 32: must be a multiple of the patch size 7",
        "models.odd.mask_ratio = 1.0: must be in [0, 1)",
        "models.typo.decoder_dpeth = 2: unknown field `decoder_dpeth`",
        "models.zero.width = 0: must be at least 1",
        "axes.model[2] = \"vit-giant\": unknown model; known: odd, typo, vit-base, zero, vit-tiny",
    ];
    let text = with_axes(&axes, models);
    assert_reports(&text, &expected);
    assert_eq!(problems(&text).len(), expected.len(), "{:#?}", problems(&text));
}

#[test]
fn global_batch_derives_the_micro_batch_per_point_or_rejects_with_the_reason() {
    let axes = r#"
model = ["vit-tiny"]
strategy = ["no_shard"]
nodes = [1, 3]
ranks_per_node = [2]
global_batch = [24, 64]
accumulation = [1, 2]
"#;
    let plan = expand(&parse(&with_axes(axes, "")).unwrap(), &MACHINE);
    let points: Vec<(&str, u32, u32)> =
        plan.points.iter().map(|p| (p.id.as_str(), p.micro_batch, p.global_batch())).collect();
    assert_eq!(
        points,
        [
            ("vit-tiny-no_shard-n1x2-mb12", 12, 24),
            ("vit-tiny-no_shard-n1x2-mb6-acc2", 6, 24),
            ("vit-tiny-no_shard-n1x2-mb32", 32, 64),
            ("vit-tiny-no_shard-n1x2-mb16-acc2", 16, 64),
            ("vit-tiny-no_shard-n3x2-mb4", 4, 24),
            ("vit-tiny-no_shard-n3x2-mb2-acc2", 2, 24),
        ]
    );
    let reasons: Vec<(&str, &str)> =
        plan.rejected.iter().map(|r| (r.id.as_str(), r.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (
                "vit-tiny-no_shard-n3x2-gb64",
                "global batch of 64 images does not divide over 6 ranks x 1 accumulation steps (64 / 6 = 10.67 images per micro-batch)"
            ),
            (
                "vit-tiny-no_shard-n3x2-gb64-acc2",
                "global batch of 64 images does not divide over 6 ranks x 2 accumulation steps (64 / 12 = 5.33 images per micro-batch)"
            ),
        ]
    );
    // Rules select points by the global batch like any axis.
    let text = format!("{}\n[[exclude]]\nglobal_batch = 64\n", with_axes(axes, ""));
    assert_eq!(expand(&parse(&text).unwrap(), &MACHINE).points.len(), 4);
}

#[test]
fn exactly_one_of_micro_batch_and_global_batch() {
    let both = AXES.replace("micro_batch = [4, 8]", "micro_batch = [4, 8]\nglobal_batch = [16]");
    assert_reports(
        &with_axes(&both, ""),
        &["axes.global_batch = [16]: set either micro_batch or global_batch, not both"],
    );
    let neither = AXES.replace("micro_batch = [4, 8]", "");
    assert_reports(
        &with_axes(&neither, ""),
        &["axes.micro_batch = []: set micro_batch (images per rank) or global_batch"],
    );
    let zero = AXES.replace("micro_batch = [4, 8]", "global_batch = [0]");
    assert_reports(&with_axes(&zero, ""), &["axes.global_batch[0] = 0: must be at least 1"]);
    let rule = format!(
        "{}\n[[exclude]]\nmicro_batch = 4\n",
        with_axes(&AXES.replace("micro_batch = [4, 8]", "global_batch = [16]"), "")
    );
    assert_reports(&rule, &["exclude[0].micro_batch = 4: not a value of axes.micro_batch"]);
}

#[test]
fn a_syntax_error_on_a_long_line_is_cut_to_its_surroundings() {
    let long = format!("name = \"x\"\ndescription = \"{}\" oops\n", "a".repeat(5000));
    let found = problems(&long);
    assert_eq!(found.len(), 1, "{found:?}");
    let problem = &found[0];
    assert!(problem.contains("(syntax)") && problem.contains("line 2"), "{problem}");
    assert!(problem.contains("oops") && problem.contains("..."), "{problem}");
    assert!(problem.len() < 300, "{} characters: {problem}", problem.len());
}

#[test]
fn the_backend_names_points_only_off_its_default_and_nccl_needs_a_gpu() {
    let with_settings = |extra: &str| {
        format!("name = \"t\"\n[axes]\n{AXES}\n[settings]\nsteps = 4\nwarmup_steps = 1\n{extra}\n")
    };
    let default = expand(&parse(&with_settings("")).unwrap(), &MACHINE);
    let mpi = expand(&parse(&with_settings("backend = \"mpi\"")).unwrap(), &MACHINE);
    let gloo = expand(&parse(&with_settings("backend = \"gloo\"")).unwrap(), &MACHINE);
    let ids = |plan: &shardsweep::plan::Plan| -> Vec<String> {
        plan.points.iter().map(|p| p.id.clone()).collect()
    };
    assert_eq!(ids(&default), ids(&mpi));
    assert!(ids(&gloo).iter().zip(ids(&default)).all(|(g, d)| *g == format!("{d}-gloo")));
    let cuda = expand(&parse(&with_settings("device = \"cuda\"")).unwrap(), &MACHINE);
    assert!(cuda.points.iter().all(|p| p.backend() == shardsweep::plan::Backend::Nccl));
    assert_eq!(ids(&cuda), ids(&default));
    let cuda_mpi =
        expand(&parse(&with_settings("device = \"cuda\"\nbackend = \"mpi\"")).unwrap(), &MACHINE);
    assert!(ids(&cuda_mpi).iter().all(|id| id.ends_with("-mpi")));
    let nccl = expand(&parse(&with_settings("backend = \"nccl\"")).unwrap(), &MACHINE);
    assert!(nccl.points.is_empty());
    assert!(nccl
        .rejected
        .iter()
        .all(|r| r.reason.contains("backend nccl needs device = \"cuda\"")
            && r.id.ends_with("-nccl")));
    assert_reports(&with_settings("backend = \"ucc\""), &["settings"]);
}

#[test]
fn timing_defaults_to_the_devices_clock_names_points_off_it_and_events_need_a_gpu() {
    let with_settings = |extra: &str| {
        format!("name = \"t\"\n[axes]\n{AXES}\n[settings]\nsteps = 4\nwarmup_steps = 1\n{extra}\n")
    };
    let ids = |plan: &shardsweep::plan::Plan| -> Vec<String> {
        plan.points.iter().map(|p| p.id.clone()).collect()
    };
    let default = expand(&parse(&with_settings("")).unwrap(), &MACHINE);
    let host = expand(&parse(&with_settings("timing = \"host\"")).unwrap(), &MACHINE);
    assert!(default.points.iter().all(|p| p.timing() == Timing::Host));
    assert_eq!(ids(&default), ids(&host));
    let cuda = expand(&parse(&with_settings("device = \"cuda\"")).unwrap(), &MACHINE);
    assert!(cuda.points.iter().all(|p| p.timing() == Timing::DeviceEvents));
    assert_eq!(ids(&cuda), ids(&default));
    let cuda_host =
        expand(&parse(&with_settings("device = \"cuda\"\ntiming = \"host\"")).unwrap(), &MACHINE);
    assert!(ids(&cuda_host).iter().all(|id| id.ends_with("-thost")), "{:?}", ids(&cuda_host));
    let events = expand(&parse(&with_settings("timing = \"device_events\"")).unwrap(), &MACHINE);
    assert!(events.points.is_empty());
    assert!(!events.rejected.is_empty());
    assert!(events
        .rejected
        .iter()
        .all(|r| r.reason.contains("timing device_events needs device = \"cuda\"")
            && r.id.ends_with("-tdevice_events")));
    assert_reports(&with_settings("timing = \"wallclock\""), &["settings", "timing"]);
}

#[test]
fn the_binaries_without_libtorch_plan_as_the_one_with_it_does() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("lite.toml");
    // Points to run and points rejected (a shard group that does not divide the world).
    let axes = "model = [\"vit-tiny\", \"vit-mini\"]\nstrategy = [\"no_shard\", \"hybrid_shard\"]\nshard_group = [3]\nnodes = [1, 2]\nranks_per_node = [2]\nmicro_batch = [2]";
    std::fs::write(&path, with_axes(axes, "")).unwrap();
    let plan = |exe: &str, json: bool| {
        let mut command = std::process::Command::new(exe);
        command.arg("plan").arg(&path);
        if json {
            command.arg("--json");
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{exe}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let (front, torch, lite) = (
        env!("CARGO_BIN_EXE_shardsweep"),
        env!("CARGO_BIN_EXE_shardsweep-torch"),
        env!("CARGO_BIN_EXE_shardsweep-lite"),
    );
    for json in [false, true] {
        assert_eq!(plan(front, json), plan(torch, json), "plan --json {json}");
        assert_eq!(plan(lite, json), plan(torch, json), "plan --json {json}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&plan(lite, true)).unwrap();
    assert_eq!(doc["points"].as_array().unwrap().len(), 4, "{doc}");
    assert_eq!(doc["rejected"].as_array().unwrap().len(), 4, "{doc}");
    // The library a binary loads at start is named in its dynamic section; the binary that
    // trains names it, so the search finds what it looks for.
    let names_libtorch = |exe: &str| {
        let bytes = std::fs::read(exe).unwrap();
        bytes.windows(16).any(|w| w == b"libtorch_cpu.so\0")
    };
    assert!(names_libtorch(torch));
    assert!(!names_libtorch(front), "{front} links libtorch");
    assert!(!names_libtorch(lite), "{lite} links libtorch");
}

#[test]
fn shardsweep_hands_every_command_that_trains_to_the_binary_with_libtorch() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep")).args(args).output();
        let out = out.unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Its own help lists every command, the ones that train included.
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0), "{help}");
    for command in ["plan", "run", "submit", "analyze", "bench", "probe"] {
        assert!(help.contains(&format!("  {command}")), "{command} in {help}");
    }
    assert!(help.starts_with("Sweeps of FSDP-style sharded MAE training"), "{help}");
    // `data` has both kinds: the group's help and `bench` are the full binary's.
    let (code, data) = run(&["data", "--help"]);
    assert!(code == Some(0) && data.contains("  bench") && data.contains("  import"), "{data}");
    let (_, bench) = run(&["data", "bench", "--help"]);
    assert!(bench.contains("Usage: shardsweep data bench"), "{bench}");
    // A command run here names this program in its usage, as the full binary does.
    let (code, plan) = run(&["plan", "--help"]);
    assert!(code == Some(0) && plan.contains("Usage: shardsweep plan"), "{plan}");
    let (code, version) = run(&["--version"]);
    assert!(code == Some(0) && version.starts_with("shardsweep "), "{version}");
    // Every command run here takes what the full binary takes: the same help, word for word.
    let help = |exe: &str, command: &[&str]| {
        let mut run = std::process::Command::new(exe);
        std::os::unix::process::CommandExt::arg0(&mut run, "shardsweep");
        let out = run.args(command).arg("--help").output().unwrap();
        assert!(out.status.success(), "{exe} {command:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let leaves: [&[&str]; 11] = [
        &["plan"],
        &["predict"],
        &["analyze"],
        &["compare"],
        &["trace"],
        &["bench-analysis"],
        &["bundle"],
        &["history"],
        &["data", "import"],
        &["data", "rasters"],
        &["data", "digits"],
    ];
    for command in leaves {
        let here = help(env!("CARGO_BIN_EXE_shardsweep"), command);
        assert_eq!(here, help(env!("CARGO_BIN_EXE_shardsweep-torch"), command), "{command:?}");
    }
    // An unknown command is refused by the full binary, with its list.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep")).arg("trian").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unrecognized subcommand 'trian'"), "{stderr}");
}
