//! Spoken-word rendering with the espeak-ng C library, loaded at run time.
//!
//! The library is opened with `dlopen` (via `libloading`) instead of being
//! linked, so the crate builds and its tests pass on machines without
//! espeak-ng; the shared object and its `espeak-ng-data` folder (for example
//! from the `espeakng-loader` wheel) are only needed when speech is rendered.
//!
//! # Determinism
//!
//! Every clip is rendered by a *fresh instance* of the library: it is
//! `dlopen`ed, initialised, used for one clip and `dlclose`d again. This is
//! the only way, through public entry points, to make a clip depend on its
//! inputs alone. espeak-ng keeps synthesis state in C statics that nothing
//! resets between utterances (the pitch-flutter phase `Flutter_ix` and the
//! other function-local statics of `wavegen.c`, the Klatt filter state, ...),
//! so in a long-lived instance the same word comes out different — even in
//! length — depending on what was rendered before. On top of that,
//! `espeak_ng_Initialize` seeds espeak's own noise generator (the breath
//! noise of variants such as `whisper`, `f2`, `Reed`; Klatt aspiration) from
//! the clock, and the speechPlayer back end (`klatt 6` variants: `klatt6`,
//! `adam`, `david`, ...) draws from libc `rand()`; both are reseeded before
//! each clip.
//!
//! A fresh instance costs about 0.6 ms on top of the synthesis itself (about
//! 600 short words per second instead of 900), but only because voices are
//! loaded by file name: otherwise espeak scans all ~250 voice files on the
//! first voice change of each instance (~5 ms). For that,
//! [`Espeak::load`] builds a private *view* of the data folder in the
//! temporary directory (symbolic links only; removed on drop) in which every
//! language voice is reachable as `voices/<lower-case name>`.
//!
//! # Global state
//!
//! espeak-ng's state, libc's `rand()` seed and the synth callback are
//! process-wide, so clips are rendered one at a time under a process-wide
//! lock. Several [`Espeak`] values may exist; they simply take turns. Two
//! process-wide side effects remain: espeak calls
//! `setlocale(LC_CTYPE, "C.UTF-8")`, and it reseeds libc's `srand` (other
//! code in the process that relies on `rand()` sequences is affected).
//! Nothing else in the process may keep the same library loaded, since
//! `dlclose` would then not reset it; `render` checks for that.
//!
//! # Known leak
//!
//! `espeak_ng_Terminate` frees the main translator but not the secondary
//! ones, which non-English voices create for words their dictionary marks as
//! English (German "hello") or for foreign letters. Each such clip therefore
//! leaks one English translator (~180 KB). English voices never do; with
//! English words, `de` and `fr` leak about 40–100 KB per clip on average,
//! `nl`, `sv`, `it`, `pt` 10–30 KB, `es`, `pl`, `pt-br` nothing. Render
//! large non-English batches in a short-lived child process.
//!
//! espeak also prints some problems straight to stderr (e.g. "Can't read
//! dictionary file" for the few voices shipped without a dictionary, which
//! [`Espeak::render`] then reports as an error).
//!
//! Unix only (symbolic links, `dlopen` flags).

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_short, c_uint, c_void};
use std::ops::RangeInclusive;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, anyhow, bail, ensure};
use libloading::Library;

/// Base pitch accepted by [`Espeak::render`]; espeak's documented range
/// (50 is the voice's own pitch).
pub const PITCH_RANGE: RangeInclusive<i32> = 0..=100;

/// Speaking rate in words per minute accepted by [`Espeak::render`];
/// espeak's `espeakRATE_MINIMUM..=espeakRATE_MAXIMUM`.
pub const RATE_RANGE: RangeInclusive<i32> = 80..=450;

/// Seed used by [`Espeak::render`], so that plain renders are reproducible.
pub const DEFAULT_SEED: u32 = 0x5EED;

/// Upper bound on one clip. Synthesis is aborted beyond it so that a runaway
/// input (e.g. a whole document passed by mistake) cannot exhaust memory.
pub const MAX_CLIP_SECONDS: usize = 60;

/// espeak copies voice names into 40-byte buffers (and prefixes the variant
/// with `!v/` using an unchecked `sprintf`); staying well below keeps every
/// copy in bounds.
const MAX_VOICE_NAME_LEN: usize = 32;

/// espeak stores the data path in a 160-byte buffer and appends file names
/// of up to ~46 bytes into buffers only 20–30 bytes larger. Only the view's
/// path reaches espeak, so this limits the temporary directory's path.
const MAX_DATA_PATH_LEN: usize = 120;

// ---------------------------------------------------------------------------
// C ABI, from speak_lib.h and espeak_ng.h (espeak-ng 1.52).

/// `espeak_ng_STATUS`: 0 is success, 1..=255 are errno values, the rest are
/// espeak-specific codes.
type Status = c_int;
const ENS_OK: Status = 0;
const ENS_VOICE_NOT_FOUND: Status = 0x1000_06FF;
const ENOUTPUT_MODE_SYNCHRONOUS: c_int = 0x0001;
/// `espeak_PARAMETER` values.
const ESPEAK_RATE: c_int = 1;
const ESPEAK_PITCH: c_int = 3;
/// `espeak_Synth` flag: the text is UTF-8.
const ESPEAK_CHARS_UTF8: c_uint = 1;
/// `espeak_POSITION_TYPE::POS_CHARACTER`.
const POS_CHARACTER: c_int = 1;

/// `t_espeak_callback`; the event list is not used, so it stays opaque.
type SynthCallback = unsafe extern "C" fn(*mut c_short, c_int, *mut c_void) -> c_int;

/// The entry points used, copied out of the library as plain function
/// pointers. They are valid while the `Library` they came from is loaded,
/// which [`Instance`] guarantees by owning both.
struct Api {
    initialize_path: unsafe extern "C" fn(*const c_char),
    initialize: unsafe extern "C" fn(*mut *mut c_void) -> Status,
    clear_error_context: unsafe extern "C" fn(*mut *mut c_void),
    initialize_output: unsafe extern "C" fn(c_int, c_int, *const c_char) -> Status,
    get_sample_rate: unsafe extern "C" fn() -> c_int,
    set_synth_callback: unsafe extern "C" fn(Option<SynthCallback>),
    set_voice_by_name: unsafe extern "C" fn(*const c_char) -> Status,
    set_parameter: unsafe extern "C" fn(c_int, c_int, c_int) -> Status,
    set_rand_seed: unsafe extern "C" fn(c_long) -> Status,
    #[allow(clippy::type_complexity)]
    synthesize: unsafe extern "C" fn(
        *const c_void,
        usize,
        c_uint,
        c_int,
        c_uint,
        c_uint,
        *mut c_uint,
        *mut c_void,
    ) -> Status,
    status_message: unsafe extern "C" fn(Status, *mut c_char, usize),
    terminate: unsafe extern "C" fn() -> Status,
}

impl Api {
    fn load(library: &Library) -> Result<Api> {
        /// Looks a symbol up and copies the function pointer out.
        ///
        /// # Safety
        /// `T` must be the `unsafe extern "C" fn` type matching the symbol's
        /// C prototype.
        unsafe fn get<T: Copy>(library: &Library, name: &str) -> Result<T> {
            // SAFETY: the caller guarantees that `T` matches the prototype.
            let symbol = unsafe { library.get::<T>(name) }
                .with_context(|| format!("espeak-ng library lacks symbol `{name}`"))?;
            Ok(*symbol)
        }
        // SAFETY: every type below is transcribed from espeak_ng.h and
        // speak_lib.h of espeak-ng 1.52 (C enums are `int`s).
        unsafe {
            Ok(Api {
                initialize_path: get(library, "espeak_ng_InitializePath")?,
                initialize: get(library, "espeak_ng_Initialize")?,
                clear_error_context: get(library, "espeak_ng_ClearErrorContext")?,
                initialize_output: get(library, "espeak_ng_InitializeOutput")?,
                get_sample_rate: get(library, "espeak_ng_GetSampleRate")?,
                set_synth_callback: get(library, "espeak_SetSynthCallback")?,
                set_voice_by_name: get(library, "espeak_ng_SetVoiceByName")?,
                set_parameter: get(library, "espeak_ng_SetParameter")?,
                set_rand_seed: get(library, "espeak_ng_SetRandSeed")?,
                synthesize: get(library, "espeak_ng_Synthesize")?,
                status_message: get(library, "espeak_ng_GetStatusCodeMessage")?,
                terminate: get(library, "espeak_ng_Terminate")?,
            })
        }
    }

    /// Human-readable text for a status code.
    fn describe(&self, status: Status) -> String {
        // Errno-group codes go through glibc's GNU `strerror_r`, which may
        // leave espeak's buffer untouched; render those on the Rust side.
        if (1..=255).contains(&status) {
            return std::io::Error::from_raw_os_error(status).to_string();
        }
        let mut buffer = [0_u8; 256];
        // SAFETY: the buffer is writable for `buffer.len()` bytes; espeak
        // writes at most that many, NUL-terminated.
        unsafe { (self.status_message)(status, buffer.as_mut_ptr().cast(), buffer.len()) };
        match CStr::from_bytes_until_nul(&buffer) {
            Ok(text) if !text.is_empty() => text.to_string_lossy().into_owned(),
            _ => format!("espeak-ng status {status:#x}"),
        }
    }

    fn check(&self, status: Status, what: &str) -> Result<()> {
        if status == ENS_OK {
            Ok(())
        } else {
            Err(anyhow!(
                "{what} failed: {} ({status:#x})",
                self.describe(status)
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Process-wide state.

/// Serialises all use of the library: its state, libc's `rand()` and
/// [`SINK`] are process-wide.
static ENGINE: Mutex<()> = Mutex::new(());

fn lock<T>(mutex: &'static Mutex<T>) -> MutexGuard<'static, T> {
    // The guarded data stays consistent even if a holder panicked, and the
    // synth callback must not panic, so poisoning is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the synth callback puts samples. The callback receives no Rust
/// context (the C signature carries only an event list), so the destination
/// has to be a static; [`ENGINE`] guarantees a single writer.
struct Sink {
    samples: Vec<i16>,
    limit: usize,
    overflowed: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    samples: Vec::new(),
    limit: 0,
    overflowed: false,
});

/// Synth callback: appends each chunk, and asks espeak to stop (returns 1)
/// once the clip exceeds its limit. It is called from C, so it must never
/// panic.
unsafe extern "C" fn collect_samples(
    wav: *mut c_short,
    count: c_int,
    _events: *mut c_void,
) -> c_int {
    // A NULL buffer marks the end of synthesis; empty chunks are normal.
    let Ok(count @ 1..) = usize::try_from(count) else {
        return 0;
    };
    if wav.is_null() {
        return 0;
    }
    let mut sink = lock(&SINK);
    if sink.samples.len() + count > sink.limit {
        sink.overflowed = true;
        return 1;
    }
    // SAFETY: espeak passes `count` initialised samples at `wav`, valid for
    // the duration of this call; `c_short` is `i16`.
    let chunk = unsafe { std::slice::from_raw_parts(wav.cast_const(), count) };
    sink.samples.extend_from_slice(chunk);
    0
}

/// Whether the object at `library` is currently mapped into the process.
fn is_loaded(library: &CStr) -> bool {
    // SAFETY: RTLD_NOLOAD never loads or initialises anything; a non-NULL
    // result is an extra reference to an already loaded object, released at
    // once.
    unsafe {
        let handle = libc::dlopen(library.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

// ---------------------------------------------------------------------------
// One freshly loaded, initialised copy of the library.

/// A freshly loaded and initialised library, used for one clip. Dropping it
/// terminates espeak and unloads the library, discarding all C state.
struct Instance {
    api: Api,
    // Dropped after `Drop::drop` has called `espeak_ng_Terminate`.
    _library: Library,
}

impl Instance {
    /// Must be called with [`ENGINE`] held.
    fn open(library: &CStr, data_dir: &CStr) -> Result<Instance> {
        ensure!(
            !is_loaded(library),
            "{} is already loaded in this process (by other code), so it cannot be reset \
             between clips and output would depend on earlier clips",
            library.to_string_lossy()
        );
        let path = Path::new(library.to_str().context("library path is not UTF-8")?);
        // SAFETY: loading runs the library's initialisers; libespeak-ng's only
        // set up C++ runtime data and have no preconditions.
        let lib = unsafe { Library::new(path) }
            .with_context(|| format!("cannot load espeak-ng library {}", path.display()))?;
        let api = Api::load(&lib)?;

        // SAFETY: NUL-terminated path shorter than espeak's 160-byte buffer
        // (checked when the view was made); espeak copies it.
        unsafe { (api.initialize_path)(data_dir.as_ptr()) };
        let mut context: *mut c_void = ptr::null_mut();
        // SAFETY: `context` is a valid out-pointer; espeak stores NULL or an
        // error context there, which is freed right below.
        let status = unsafe { (api.initialize)(&raw mut context) };
        if !context.is_null() {
            // SAFETY: produced by espeak_ng_Initialize, freed exactly once.
            unsafe { (api.clear_error_context)(&raw mut context) };
        }
        // From here on `instance` terminates espeak if a later step fails.
        let instance = Instance { api, _library: lib };
        instance.api.check(status, "espeak_ng_Initialize")?;

        // SAFETY: synchronous in-memory output (no audio device); buffer
        // length 0 selects espeak's default chunk size; device may be NULL.
        let status =
            unsafe { (instance.api.initialize_output)(ENOUTPUT_MODE_SYNCHRONOUS, 0, ptr::null()) };
        instance.api.check(status, "espeak_ng_InitializeOutput")?;
        // SAFETY: `collect_samples` matches `t_espeak_callback`, is valid for
        // the life of the program and never unwinds.
        unsafe { (instance.api.set_synth_callback)(Some(collect_samples)) };
        Ok(instance)
    }

    fn sample_rate(&self) -> Result<u32> {
        // SAFETY: plain getter, valid after initialisation.
        let rate = unsafe { (self.api.get_sample_rate)() };
        u32::try_from(rate)
            .ok()
            .filter(|&rate| rate > 0)
            .with_context(|| format!("espeak-ng reported sample rate {rate}"))
    }

    /// Synthesises one clip. `voice` must have been validated.
    fn synthesize(
        &self,
        text: &CStr,
        voice: &CStr,
        pitch: i32,
        rate: i32,
        seed: u32,
        limit: usize,
    ) -> Result<Vec<i16>> {
        // SAFETY: NUL-terminated and short enough for espeak's fixed buffers
        // (checked by `Espeak::voice_name`).
        let status = unsafe { (self.api.set_voice_by_name)(voice.as_ptr()) };
        if status == ENS_VOICE_NOT_FOUND {
            bail!("espeak-ng cannot load the voice");
        }
        self.api.check(status, "setting the voice")?;
        // Rate and pitch go after the voice, whose defaults would otherwise
        // replace them.
        // SAFETY: plain setter; valid parameter id, range-checked value.
        let status = unsafe { (self.api.set_parameter)(ESPEAK_RATE, rate, 0) };
        self.api.check(status, "setting the rate")?;
        // SAFETY: as above.
        let status = unsafe { (self.api.set_parameter)(ESPEAK_PITCH, pitch, 0) };
        self.api.check(status, "setting the pitch")?;

        // SAFETY: srand has no preconditions; it reseeds the libc generator
        // that espeak's speechPlayer back end draws from.
        unsafe { libc::srand(seed) };
        // SAFETY: plain setter of espeak's own generator, which
        // initialisation seeded from the clock.
        let status = unsafe { (self.api.set_rand_seed)(c_long::from(seed)) };
        self.api.check(status, "seeding the noise generator")?;

        {
            let mut sink = lock(&SINK);
            sink.samples.clear();
            sink.overflowed = false;
            sink.limit = limit;
        }
        let bytes = text.to_bytes_with_nul();
        // SAFETY: NUL-terminated UTF-8 buffer of the given size that outlives
        // the call; in synchronous mode espeak returns only after the last
        // callback. Identifier and user data may be NULL.
        let status = unsafe {
            (self.api.synthesize)(
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                POS_CHARACTER,
                0,
                ESPEAK_CHARS_UTF8,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let (samples, overflowed) = {
            let mut sink = lock(&SINK);
            (std::mem::take(&mut sink.samples), sink.overflowed)
        };
        ensure!(
            !overflowed,
            "audio exceeds {MAX_CLIP_SECONDS} s; synthesis aborted"
        );
        self.api.check(status, "synthesis")?;
        // A voice whose dictionary is missing "speaks" a few samples of
        // silence (after printing to stderr) instead of failing.
        ensure!(
            samples.iter().any(|&s| s != 0),
            "espeak-ng produced no audio (for a voice, this usually means its dictionary is missing)"
        );
        Ok(samples)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the library is still loaded (fields drop after this) and
        // nothing uses this instance afterwards. Terminating frees espeak's
        // buffers; it is harmless after a failed initialisation, whose
        // resources it releases as well.
        unsafe { (self.api.terminate)() };
    }
}

// ---------------------------------------------------------------------------

/// A configured espeak-ng: which library and data to use, and the voices
/// they offer. Each [`render`](Self::render) runs in a fresh instance of
/// the library (see the module docs), so clips never depend on each other.
pub struct Espeak {
    library: CString,
    view: DataView,
    view_path: CString,
    sample_rate: u32,
    voices: Vec<String>,
    variants: Vec<String>,
}

impl Espeak {
    /// Prepares rendering with `library` (the `libespeak-ng.so` file) and
    /// the data folder `data_dir`, which may be the `espeak-ng-data` folder
    /// itself or the folder containing it. Loads the library once to check
    /// that it works and to learn its sample rate.
    ///
    /// # Errors
    /// If a path is missing or unsuitable, the library is not espeak-ng or
    /// is already loaded by other code, initialisation fails, or the
    /// temporary data view cannot be created.
    pub fn load(library: &Path, data_dir: &Path) -> Result<Espeak> {
        let library_path = std::fs::canonicalize(library).with_context(|| {
            format!("espeak-ng library {} is not accessible", library.display())
        })?;
        let library_c = CString::new(library_path.to_str().context("library path is not UTF-8")?)
            .context("library path contains a NUL byte")?;
        let data_dir = resolve_data_dir(data_dir)?;
        let voice_files = find_voice_files(&data_dir)?;
        let variants = find_variants(&data_dir);
        let view = DataView::create(&data_dir, &voice_files)?;
        let view_path = CString::new(view.dir.to_str().context("temporary path is not UTF-8")?)
            .context("temporary path contains a NUL byte")?;

        let sample_rate = {
            let _engine = lock(&ENGINE);
            Instance::open(&library_c, &view_path).and_then(|instance| instance.sample_rate())
        }
        .with_context(|| format!("initialising espeak-ng with data {}", data_dir.display()))?;

        Ok(Espeak {
            library: library_c,
            view,
            view_path,
            sample_rate,
            voices: voice_files.into_iter().map(|(name, _)| name).collect(),
            variants,
        })
    }

    /// Sample rate of every clip, in Hz (22050 for the standard data).
    #[must_use]
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Language voices accepted before the `+` of [`render`](Self::render)'s
    /// `voice`: the lower-cased voice file names, e.g. `en-us`,
    /// `en-gb-x-rp`, `de`. Sorted.
    #[must_use]
    pub fn list_voices(&self) -> Vec<String> {
        self.voices.clone()
    }

    /// Variants accepted after the `+` (the files in
    /// `espeak-ng-data/voices/!v`), e.g. `m3`, `f2`, `klatt3`, `whisper`.
    /// Sorted; some contain capitals or spaces (`Mr serious`).
    #[must_use]
    pub fn list_variants(&self) -> Vec<String> {
        self.variants.clone()
    }

    /// Renders `text` as mono 16-bit samples at
    /// [`sample_rate`](Self::sample_rate), with the noise generators seeded
    /// by [`DEFAULT_SEED`].
    ///
    /// `voice` is `language` or `language+variant` (`en-us`, `de+f2`,
    /// `en+klatt3`; `+3` and `+13` are espeak's shorthands for `+m3` and
    /// `+f3`). `pitch` must lie in [`PITCH_RANGE`], `rate` (words per minute)
    /// in [`RATE_RANGE`]. Text that yields no audio is an error, since a
    /// silent clip is never what a caller asking for speech wants.
    ///
    /// # Errors
    /// For an unknown or malformed voice, out-of-range pitch or rate, empty
    /// text or text containing NUL, silent or overlong output, and any
    /// failure reported by espeak-ng; the message names text and voice.
    pub fn render(&mut self, text: &str, voice: &str, pitch: i32, rate: i32) -> Result<Vec<i16>> {
        self.render_seeded(text, voice, pitch, rate, DEFAULT_SEED)
    }

    /// Like [`render`](Self::render), with an explicit seed for the noise of
    /// Klatt, speechPlayer and breathy (whisper-like) voices; other voices
    /// ignore it. Equal arguments give byte-identical output, whatever was
    /// rendered before and in whichever process.
    ///
    /// # Errors
    /// As for [`render`](Self::render).
    pub fn render_seeded(
        &mut self,
        text: &str,
        voice: &str,
        pitch: i32,
        rate: i32,
        seed: u32,
    ) -> Result<Vec<i16>> {
        self.render_clip(text, voice, pitch, rate, seed).with_context(|| {
            format!("espeak-ng: rendering {text:?} with voice {voice:?} (pitch {pitch}, rate {rate})")
        })
    }

    fn render_clip(
        &self,
        text: &str,
        voice: &str,
        pitch: i32,
        rate: i32,
        seed: u32,
    ) -> Result<Vec<i16>> {
        ensure!(
            PITCH_RANGE.contains(&pitch),
            "pitch {pitch} outside {PITCH_RANGE:?}"
        );
        ensure!(
            RATE_RANGE.contains(&rate),
            "rate {rate} outside {RATE_RANGE:?}"
        );
        ensure!(!text.trim().is_empty(), "text is empty");
        let text = CString::new(text).map_err(|_| anyhow!("text contains a NUL byte"))?;
        let voice = self.voice_name(voice)?;
        let limit = MAX_CLIP_SECONDS * self.sample_rate as usize;

        let _engine = lock(&ENGINE);
        let instance = Instance::open(&self.library, &self.view_path)?;
        instance.synthesize(&text, &voice, pitch, rate, seed, limit)
    }

    /// Validates `voice` and returns the name to hand to espeak.
    ///
    /// Without this, an unknown variant would be silently ignored (giving
    /// the plain language voice), a folder name would "load" as an empty
    /// voice, and long names would overflow espeak's buffers.
    fn voice_name(&self, voice: &str) -> Result<CString> {
        ensure!(
            !voice.is_empty() && voice.len() <= MAX_VOICE_NAME_LEN,
            "voice name must be 1 to {MAX_VOICE_NAME_LEN} bytes"
        );
        let (language, variant) = match voice.split_once('+') {
            Some((language, variant)) => (language, Some(variant)),
            None => (voice, None),
        };
        let language = language.to_ascii_lowercase();
        ensure!(
            self.voices.binary_search(&language).is_ok(),
            "unknown language voice {language:?} (see Espeak::list_voices)"
        );
        let name = match variant {
            None => language,
            Some(variant) => {
                let file = variant_file(variant)?;
                ensure!(
                    self.variants.binary_search(&file).is_ok(),
                    "unknown voice variant {variant:?} (no file voices/!v/{file}; see Espeak::list_variants)"
                );
                format!("{language}+{variant}")
            }
        };
        CString::new(name).map_err(|_| anyhow!("voice name contains a NUL byte"))
    }
}

impl std::fmt::Debug for Espeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Espeak")
            .field("library", &self.library)
            .field("view", &self.view.dir)
            .field("sample_rate", &self.sample_rate)
            .field("voices", &self.voices.len())
            .field("variants", &self.variants.len())
            .finish_non_exhaustive()
    }
}

/// Maps a variant as written after `+` to its file in `voices/!v`, as
/// espeak does: names are file names, `N` (1–9) means `mN`, `1N` means `fN`.
fn variant_file(variant: &str) -> Result<String> {
    ensure!(
        !variant.is_empty()
            && variant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_ ".contains(&b)),
        "malformed voice variant {variant:?}"
    );
    if !variant.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(variant.to_owned());
    }
    match variant.parse::<u32>() {
        Ok(n @ 1..=9) => Ok(format!("m{n}")),
        Ok(n @ 11..=19) => Ok(format!("f{}", n - 10)),
        _ => bail!("numbered voice variant {variant:?} must be 1-9 (male) or 11-19 (female)"),
    }
}

/// Finds the `espeak-ng-data` folder (given directly or as its parent) and
/// returns its absolute path, which the view's links point to.
fn resolve_data_dir(dir: &Path) -> Result<PathBuf> {
    let nested = dir.join("espeak-ng-data");
    let candidate = if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    };
    let data_dir = std::fs::canonicalize(&candidate).with_context(|| {
        format!(
            "espeak-ng data folder {} is not accessible",
            candidate.display()
        )
    })?;
    for file in ["phontab", "phonindex", "phondata", "intonations"] {
        ensure!(
            data_dir.join(file).is_file(),
            "{} is not an espeak-ng-data folder (no `{file}`)",
            data_dir.display()
        );
    }
    Ok(data_dir)
}

/// The language voices: every file below `lang/`, keyed by its lower-cased
/// file name (`lang/gmw/en-US` → `en-us`), which is also how espeak's own
/// name lookup matches them. Sorted by name.
fn find_voice_files(data_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn walk(dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(&path, out)?;
            } else if let Some(name) = entry.file_name().to_str() {
                out.push((name.to_ascii_lowercase(), path));
            }
        }
        Ok(())
    }
    let lang = data_dir.join("lang");
    let mut voices = Vec::new();
    walk(&lang, &mut voices)
        .with_context(|| format!("cannot list voices in {}", lang.display()))?;
    voices.sort();
    voices.dedup_by(|a, b| a.0 == b.0);
    ensure!(!voices.is_empty(), "no voices in {}", lang.display());
    Ok(voices)
}

/// Variant names present in `voices/!v`, sorted; empty if there is none.
fn find_variants(data_dir: &Path) -> Vec<String> {
    let mut variants: Vec<String> = std::fs::read_dir(data_dir.join("voices").join("!v"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    variants.sort();
    variants
}

/// A temporary folder that looks like `espeak-ng-data` (links to all of its
/// entries) but also holds a link `voices/<name>` to every language voice.
/// espeak then finds each voice by file name directly instead of scanning
/// every voice file on the first voice change of each fresh instance.
struct DataView {
    dir: PathBuf,
}

impl DataView {
    fn create(data_dir: &Path, voice_files: &[(String, PathBuf)]) -> Result<DataView> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let temp = std::env::temp_dir();
        let view = loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = temp.join(format!("espeak-ng-view-{}-{n}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => break DataView { dir },
                // Left behind by a killed process that had the same id.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
        };
        let length = view.dir.as_os_str().len();
        ensure!(
            length <= MAX_DATA_PATH_LEN,
            "temporary folder {} is too long for espeak-ng's fixed path buffers \
             ({length} > {MAX_DATA_PATH_LEN} bytes); set TMPDIR to a shorter path",
            view.dir.display()
        );
        view.populate(data_dir, voice_files).with_context(|| {
            format!("cannot build espeak-ng data view in {}", view.dir.display())
        })?;
        Ok(view)
    }

    fn populate(&self, data_dir: &Path, voice_files: &[(String, PathBuf)]) -> std::io::Result<()> {
        for entry in std::fs::read_dir(data_dir)? {
            let name = entry?.file_name();
            if name != "voices" {
                symlink(data_dir.join(&name), self.dir.join(&name))?;
            }
        }
        let voices = self.dir.join("voices");
        std::fs::create_dir(&voices)?;
        if let Ok(entries) = std::fs::read_dir(data_dir.join("voices")) {
            for entry in entries {
                let name = entry?.file_name();
                symlink(data_dir.join("voices").join(&name), voices.join(&name))?;
            }
        }
        for (name, path) in voice_files {
            let link = voices.join(name);
            // Never shadow an entry espeak ships in `voices/` (e.g. `!v`, `mb`).
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(path, link)?;
            }
        }
        Ok(())
    }
}

impl Drop for DataView {
    fn drop(&mut self) {
        // Removes only the links (remove_dir_all does not follow them). A
        // leftover folder is harmless, so failure is ignored.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_variants_follow_espeak() {
        assert_eq!(variant_file("3").unwrap(), "m3");
        assert_eq!(variant_file("13").unwrap(), "f3");
        assert_eq!(variant_file("klatt3").unwrap(), "klatt3");
        assert_eq!(variant_file("Mr serious").unwrap(), "Mr serious");
        for bad in ["0", "10", "20", "../x", "a/b", ""] {
            assert!(variant_file(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn engine_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Espeak>();
    }

    #[test]
    fn missing_data_dir_is_an_error() {
        let err = resolve_data_dir(Path::new("/nonexistent/espeak")).unwrap_err();
        assert!(format!("{err:#}").contains("not accessible"), "{err:#}");
    }

    #[test]
    fn missing_library_is_an_error() {
        let err = Espeak::load(
            Path::new("/nonexistent/libespeak-ng.so"),
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not accessible"), "{err:#}");
    }
}
