//! Reading one member out of what a registry delivers: a wheel (zip), a Debian package
//! (ar holding `data.tar.{xz,zst,gz}`), and undoing gzip compression of the member itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};

/// Reads `member` from a zip archive (a Python wheel).
pub fn read_zip_member(archive: &Path, member: &str) -> Result<Vec<u8>> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", archive.display()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| anyhow!("{} has no member `{member}`", archive.display()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads `member` from the zip archive held in `bytes` (itself the member `outer` of a wheel
/// or a file, named in messages).
pub fn read_zip_bytes_member(bytes: &[u8], outer: &str, member: &str) -> Result<Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("`{outer}` is not a zip archive"))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| anyhow!("`{outer}` has no member `{member}`"))?;
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut out)?;
    Ok(out)
}

/// Reads `member` (a path such as `usr/share/...`, with or without a leading `./`) from the
/// data archive inside a Debian package.
pub fn read_deb_member(deb: &Path, member: &str) -> Result<Vec<u8>> {
    let wanted = clean(member);
    let mut found = None;
    visit_deb(deb, &mut |path, item| {
        if path == wanted {
            let mut bytes = Vec::new();
            item.read_to_end(&mut bytes)?;
            found = Some(bytes);
            return Ok(false);
        }
        Ok(true)
    })?;
    found.ok_or_else(|| anyhow!("{} has no member `{wanted}`", deb.display()))
}

/// Reads every regular file below the folder `prefix` of a Debian package's data archive, keyed
/// by its path relative to `prefix`.
pub fn read_deb_tree(deb: &Path, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let folder = format!("{}/", clean(prefix).trim_end_matches('/'));
    let mut files = BTreeMap::new();
    visit_deb(deb, &mut |path, item| {
        if let Some(rel) = path.strip_prefix(&folder)
            && item.header().entry_type().is_file()
        {
            let mut bytes = Vec::new();
            item.read_to_end(&mut bytes)?;
            files.insert(rel.to_string(), bytes);
        }
        Ok(true)
    })?;
    ensure!(
        !files.is_empty(),
        "{} has no files below `{folder}`",
        deb.display()
    );
    Ok(files)
}

/// Reads every file below the folder `prefix` of a zip archive, keyed by its path relative to
/// `prefix`.
pub fn read_zip_tree(archive: &Path, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let folder = format!("{}/", clean(prefix).trim_end_matches('/'));
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", archive.display()))?;
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        if !entry.is_file() {
            continue;
        }
        let name = entry.name()?.to_string();
        if let Some(rel) = name.strip_prefix(&folder) {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            files.insert(rel.to_string(), bytes);
        }
    }
    ensure!(
        !files.is_empty(),
        "{} has no files below `{folder}`",
        archive.display()
    );
    Ok(files)
}

fn clean(member: &str) -> &str {
    member.trim_start_matches("./").trim_start_matches('/')
}

/// Calls `visit` with each entry of the package's data archive (path without `./`) until it
/// returns `false`.
fn visit_deb(
    deb: &Path,
    visit: &mut dyn FnMut(&str, &mut tar::Entry<'_, Box<dyn Read + '_>>) -> Result<bool>,
) -> Result<()> {
    let file = File::open(deb).with_context(|| format!("cannot open {}", deb.display()))?;
    let mut ar = ar::Archive::new(file);
    while let Some(entry) = ar.next_entry() {
        let entry = entry.with_context(|| format!("{} is not a Debian package", deb.display()))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        let reader: Box<dyn Read> = match name.as_str() {
            "data.tar.xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
            "data.tar.zst" => Box::new(zstd::stream::read::Decoder::new(entry)?),
            "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "data.tar" => Box::new(entry),
            other => bail!(
                "{} uses an unsupported compression ({other})",
                deb.display()
            ),
        };
        let mut tar = tar::Archive::new(reader);
        for item in tar
            .entries()
            .with_context(|| format!("reading {name} of {}", deb.display()))?
        {
            let mut item = item.with_context(|| format!("reading {name} of {}", deb.display()))?;
            let path = item.path()?.to_string_lossy().into_owned();
            if !visit(clean(&path), &mut item)? {
                return Ok(());
            }
        }
        return Ok(());
    }
    bail!(
        "{} has no data.tar member; is it a Debian package?",
        deb.display()
    )
}

/// Returns the bytes decompressed if they start with the gzip magic number, else unchanged.
pub fn gunzip_if_compressed(bytes: Vec<u8>) -> io::Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_undone_and_plain_bytes_pass_through() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello pixels").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip_if_compressed(gz).unwrap(), b"hello pixels");
        assert_eq!(gunzip_if_compressed(b"plain".to_vec()).unwrap(), b"plain");
    }

    #[test]
    fn a_member_is_read_from_a_zip_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        zip.start_file("pkg/data/x.csv", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"1,2,3").unwrap();
        zip.finish().unwrap();
        assert_eq!(read_zip_member(&path, "pkg/data/x.csv").unwrap(), b"1,2,3");
        let err = read_zip_member(&path, "pkg/data/y.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pkg/data/y.csv"), "{err}");
    }

    #[test]
    fn a_member_is_read_from_a_deb_data_tarball() {
        let dir = tempfile::tempdir().unwrap();
        // data.tar.xz holding ./usr/share/d/x.bin
        let mut tar_bytes = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar_bytes);
            let mut header = tar::Header::new_gnu();
            header.set_size(4);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, "./usr/share/d/x.bin", &b"abcd"[..])
                .unwrap();
            builder.finish().unwrap();
        }
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar_bytes).unwrap();
        let xz = xz.finish().unwrap();
        let deb = dir.path().join("p.deb");
        {
            let mut ar = ar::Builder::new(File::create(&deb).unwrap());
            ar.append(
                &ar::Header::new(b"debian-binary".to_vec(), 4),
                &b"2.0\n"[..],
            )
            .unwrap();
            ar.append(
                &ar::Header::new(b"data.tar.xz".to_vec(), xz.len() as u64),
                &xz[..],
            )
            .unwrap();
        }
        assert_eq!(read_deb_member(&deb, "usr/share/d/x.bin").unwrap(), b"abcd");
        assert!(read_deb_member(&deb, "usr/share/d/none").is_err());
    }
}
