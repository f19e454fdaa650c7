//! `include`: an experiment file takes the settings tables of others, overrides them key by
//! key, and every error names the file and line it comes from.

use std::path::{Path, PathBuf};

use harness_spec::{Experiment, Modality, SpecError};

const MATRIX: &str = r#"
[matrix]
targets = ["mnist"]
sources = ["scratch", "fashion-mnist"]
n_train = [50]
options = [1, 2]
seeds = [0]
"#;

/// A folder of experiment files written from `(name, text)` pairs.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(files: &[(&str, &str)]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn load(&self, name: &str) -> Result<Experiment, SpecError> {
        Experiment::load(&self.path(name))
    }

    /// The 1-based line of the first occurrence of `needle` in file `name`.
    fn line_of(&self, name: &str, needle: &str) -> usize {
        let text = std::fs::read_to_string(self.path(name)).unwrap();
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in {name}"));
        text[..at].matches('\n').count() + 1
    }
}

fn line(err: &SpecError) -> usize {
    err.location
        .unwrap_or_else(|| panic!("no line: {err}"))
        .line
}

#[test]
fn included_settings_are_defaults_the_including_file_overrides_key_by_key() {
    let base = "[model]\nd_model = 32\nn_heads = 8\nactivation = \"gelu\"\n\n[finetune]\nepochs = 5\npatience = 3\n";
    let top = format!("include = [\"base.toml\"]\n{MATRIX}\n[model]\nd_model = 16\n");
    let files = Files::new(&[("base.toml", base), ("top.toml", &top)]);
    let e = files.load("top.toml").unwrap();
    assert_eq!(e.model.d_model, 16, "the including file wins");
    assert_eq!(
        e.model.n_heads, 8,
        "a key it does not set comes from the include"
    );
    assert_eq!(e.model.activation.to_string(), "gelu");
    assert_eq!((e.finetune.epochs, e.finetune.patience), (5, 3));
    assert_eq!(
        e.finetune.batch_size, 32,
        "a key no file sets keeps its default"
    );
    assert_eq!(e.origin("model.n_heads").0, files.path("base.toml"));
    assert_eq!(e.origin("model.d_model").0, files.path("top.toml"));
    assert_eq!(e.included.len(), 1);
}

#[test]
fn nested_tables_merge_leaf_by_leaf_across_includes_and_their_includes() {
    let shared = "[pretrain]\nbatch_size = 16\nlearning_rate = 0.01\n";
    let audio = "include = [\"shared.toml\"]\n[pretrain.audio]\nepochs = 15\n";
    let text =
        "include = [\"shared.toml\"]\n[pretrain]\nbatch_size = 16\n[pretrain.text]\nepochs = 4\n";
    let top =
        format!("include = [\"audio.toml\", \"text.toml\"]\n{MATRIX}\n[pretrain]\nseed = 3\n");
    let files = Files::new(&[
        ("shared.toml", shared),
        ("audio.toml", audio),
        ("text.toml", text),
        ("top.toml", &top),
    ]);
    let e = files.load("top.toml").unwrap();
    let audio = e.pretrain.for_modality(Modality::Audio);
    let text = e.pretrain.for_modality(Modality::Text);
    let image = e.pretrain.for_modality(Modality::Image);
    assert_eq!((audio.epochs, text.epochs, image.epochs), (15, 4, 3));
    for p in [&audio, &text, &image] {
        assert_eq!((p.batch_size, p.learning_rate, p.seed), (16, 0.01, 3));
    }
    assert_eq!(
        e.origin("pretrain.audio.epochs").0,
        files.path("audio.toml")
    );
}

#[test]
fn two_included_files_that_disagree_on_a_key_are_an_error_naming_both() {
    let a = "[pretrain]\nbatch_size = 64\nepochs = 3\n";
    let b = "[pretrain]\nbatch_size = 64\n\nepochs = 15\n";
    let top = format!("include = [\"a.toml\", \"b.toml\"]\n{MATRIX}");
    let files = Files::new(&[("a.toml", a), ("b.toml", b), ("top.toml", &top)]);
    let err = files.load("top.toml").unwrap_err();
    assert_eq!(err.file, files.path("b.toml"), "{err}");
    assert_eq!(line(&err), 4, "{err}");
    let a_line = format!("{}:3", files.path("a.toml").display());
    for says in ["`pretrain.epochs`", "15", &a_line, "top.toml"] {
        assert!(err.message.contains(says), "{says:?} in {err}");
    }
    assert!(err.help.unwrap().contains("top.toml"));
}

#[test]
fn the_including_file_settles_a_disagreement_by_setting_the_key_itself() {
    let a = "[finetune]\nepochs = 3\nbatch_size = 16\n";
    let b = "[finetune]\nepochs = 15\nbatch_size = 16\n";
    let top = format!("include = [\"a.toml\", \"b.toml\"]\n{MATRIX}\n[finetune]\nepochs = 7\n");
    let files = Files::new(&[("a.toml", a), ("b.toml", b), ("top.toml", &top)]);
    let e = files.load("top.toml").unwrap();
    assert_eq!((e.finetune.epochs, e.finetune.batch_size), (7, 16));
}

#[test]
fn an_include_cycle_is_an_error_at_the_include_that_closes_it() {
    let a = format!("include = [\"b.toml\"]\n{MATRIX}");
    let b = "# b\ninclude = [\"a.toml\"]\n";
    let files = Files::new(&[("a.toml", &a), ("b.toml", b)]);
    let err = files.load("a.toml").unwrap_err();
    assert_eq!(err.file, files.path("b.toml"), "{err}");
    assert_eq!(line(&err), 2, "{err}");
    assert!(err.message.contains("cycle"), "{err}");
    // A file that includes itself.
    let own = format!("\ninclude = [\"own.toml\"]\n{MATRIX}");
    let files = Files::new(&[("own.toml", &own)]);
    let err = files.load("own.toml").unwrap_err();
    assert_eq!(
        (line(&err), err.message.contains("cycle")),
        (2, true),
        "{err}"
    );
}

#[test]
fn a_missing_included_file_is_an_error_at_its_include_line() {
    let top = format!("# settings\ninclude = [\"image.toml\", \"nope.toml\"]\n{MATRIX}");
    let files = Files::new(&[("top.toml", &top), ("image.toml", "")]);
    let err = files.load("top.toml").unwrap_err();
    assert_eq!(err.file, files.path("top.toml"));
    assert_eq!(line(&err), 2, "{err}");
    assert!(err.message.contains("nope.toml"), "{err}");
}

#[test]
fn an_error_in_an_included_file_names_that_file_and_its_line() {
    let good = "# shared\n[model]\nd_model = 32\nn_heads = 4\n";
    let top = format!("include = [\"shared/model.toml\"]\n{MATRIX}");
    // (line replaced, its replacement, a word the error must have)
    for (bad, says, word) in [
        ("n_heads = 4", "width = 3", "width"),            // unknown key
        ("d_model = 32", "d_model = \"wide\"", "string"), // wrong type
        ("n_heads = 4", "dropout = 1.5", "dropout"),      // checked after merging
        ("d_model = 32", "d_model = 30", "d_model"),      // no multiple of 4 heads
        ("n_heads = 4", "activation = \"tanh\"", "activation"), // not an activation
    ] {
        let included = good.replacen(bad, says, 1);
        let files = Files::new(&[("shared/model.toml", &included), ("top.toml", &top)]);
        let err = files.load("top.toml").unwrap_err();
        assert_eq!(err.file, files.path("shared/model.toml"), "{says}: {err}");
        let expected = files.line_of("shared/model.toml", says);
        assert_eq!(line(&err), expected, "{says}: {err}");
        assert!(err.message.contains(word), "{says}: {err}");
    }
}

#[test]
fn name_description_matrix_and_hypotheses_are_never_inherited() {
    let single = format!(
        "name = \"single\"\ndescription = \"the single one\"\n{}\n[model]\nd_ff = 96\n\n[[hypothesis]]\nname = \"h\"\na = \"matched\"\nb = \"scratch\"\nexpect = \"greater\"\n",
        MATRIX.replace("n_train = [50]", "n_train = [50, 200]")
    );
    let top = format!("include = [\"single.toml\"]\n{MATRIX}");
    let files = Files::new(&[("single.toml", &single), ("top.toml", &top)]);
    let e = files.load("top.toml").unwrap();
    assert_eq!(e.model.d_ff, 96, "its settings are inherited");
    assert_eq!(e.name, "top");
    assert_eq!(e.description, "");
    assert_eq!(e.matrix.n_train.len(), 1);
    assert!(e.hypotheses.is_empty());
}

#[test]
fn an_included_file_needs_no_matrix_but_the_experiment_does() {
    let files = Files::new(&[
        ("settings.toml", "[finetune]\nepochs = 9\n"),
        ("top.toml", "include = [\"settings.toml\"]\n"),
    ]);
    let err = files.load("top.toml").unwrap_err();
    assert_eq!(err.file, files.path("top.toml"));
    assert!(err.message.contains("[matrix]"), "{err}");
}

#[test]
fn a_tokenizer_named_by_an_included_file_is_found_beside_that_file() {
    let top = format!("include = [\"text/settings.toml\"]\n{MATRIX}");
    let files = Files::new(&[
        ("text/settings.toml", "[text]\ntokenizer = \"tok.json\"\n"),
        ("top.toml", &top),
    ]);
    let e = files.load("top.toml").unwrap();
    let folder = e.origin("text.tokenizer").0.parent().map(Path::to_path_buf);
    assert_eq!(folder, Some(files.path("text")));
}
