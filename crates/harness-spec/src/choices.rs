//! Closed sets of choices an experiment file makes, as enums from the moment the file is read:
//! an unknown value is a parse error at its line that lists the allowed ones, and no code
//! further on compares the raw text or number again.

use serde::{Deserialize, Serialize};

use crate::plan::Relation;

/// Declares a closed set of choices written as names in TOML files: the enum, `ALL`,
/// `as_str`, `Display` (padded), and serde as the name, so that keys and fingerprints read the
/// text they read before the enum existed; an unknown name is refused with the allowed ones
/// (the TOML reader adds the file and line).
macro_rules! named_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($key:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every choice, in the order an error lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name a file uses.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                $name::ALL
                    .iter()
                    .copied()
                    .find(|c| c.as_str() == name)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|c| c.as_str()).collect();
                        serde::de::Error::custom(crate::choices::must_be($key, &names, &name))
                    })
            }
        }
    };
}

/// "`KEY` must be "a" or "b", found "x"": the error of an unknown name.
pub(crate) fn must_be(key: &str, names: &[&str], found: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let allowed = match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    };
    format!("`{key}` must be {allowed}, found {found:?}")
}

/// The lecture's two ways of transferring a network (`matrix.options`): written as the
/// numbers 1 and 2 in experiment files, result rows and fingerprints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransferOption {
    /// Option 1: freeze the transferred layers, train only what is new (the output layer, and
    /// a fresh stem in front of a network from another modality).
    Freeze,
    /// Option 2: fine-tune every layer.
    FineTune,
}

impl TransferOption {
    pub const ALL: [TransferOption; 2] = [TransferOption::Freeze, TransferOption::FineTune];

    /// The option's number: 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            TransferOption::Freeze => 1,
            TransferOption::FineTune => 2,
        }
    }

    /// The option numbered `number`; None for any other number.
    pub fn from_number(number: i64) -> Option<TransferOption> {
        TransferOption::ALL
            .into_iter()
            .find(|o| i64::from(o.number()) == number)
    }

    /// Whether the transferred layers stay frozen (Option 1).
    pub fn freezes(self) -> bool {
        self == TransferOption::Freeze
    }
}

impl std::fmt::Display for TransferOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Through the number's own formatting, so widths and alignment apply.
        std::fmt::Display::fmt(&self.number(), f)
    }
}

/// An option read as its number, as tests write it (`cell.option == 1`).
impl PartialEq<u8> for TransferOption {
    fn eq(&self, other: &u8) -> bool {
        self.number() == *other
    }
}

impl TryFrom<u8> for TransferOption {
    type Error = String;

    fn try_from(number: u8) -> Result<Self, String> {
        TransferOption::from_number(number.into()).ok_or_else(|| {
            format!(
                "option must be 1 (freeze the transferred layers) or 2 (fine-tune all), found {number}"
            )
        })
    }
}

/// Written as its number, so that fingerprints, reports' contexts and rows keep the bytes
/// they had when options were plain numbers.
impl Serialize for TransferOption {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.number())
    }
}

impl<'de> Deserialize<'de> for TransferOption {
    /// Reads 1 or 2; any other number is refused with the allowed ones (the file's line comes
    /// from the TOML reader).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = i64::deserialize(deserializer)?;
        TransferOption::from_number(number).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "option must be 1 (freeze the transferred layers) or 2 (fine-tune all), found {number}"
            ))
        })
    }
}

/// How a network's random weights are drawn when it has no published ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RandomInit {
    /// As the original implementation draws them (written `"original"` in fingerprints).
    Original,
}

named_choice! {
    /// How text is normalised before it reaches the tokenizer (`text.normalise`).
    pub enum TextNormalisation ("text.normalise") {
        /// Lower-case letters a–z and single spaces: accents stripped and letters lower-cased
        /// (as the tokenizer's BERT normaliser does), every other character a word break. This
        /// is what the 20 Newsgroups reference package already is, so applying it to every
        /// dataset makes source and target text alike.
        Letters = "letters",
        /// Only the tokenizer's own normaliser (lower-casing, accents stripped).
        Tokenizer = "tokenizer",
    }
}

named_choice! {
    /// The feed-forward activation of the Transformer backbone (`model.activation`).
    pub enum Activation ("model.activation") {
        Relu = "relu",
        Gelu = "gelu",
    }
}

named_choice! {
    /// The 0 dB reference of a log-mel spectrogram (`audio.reference`).
    pub enum DbReference ("audio.reference") {
        /// Each clip's maximum (librosa `ref=np.max`), so loudness differences between
        /// recordings vanish.
        Max = "max",
        /// `ref = 1`.
        One = "one",
    }
}

named_choice! {
    /// Which column of a CSV record holds the label (`csv.label_column`).
    pub enum LabelColumn ("csv.label_column") {
        First = "first",
        Last = "last",
    }
}

named_choice! {
    /// How `text-csv` labels name a class (`csv.labels`).
    pub enum CsvLabels ("csv.labels") {
        /// The class name.
        Names = "names",
        /// 1 = the first class in `classes`.
        OneBased = "one-based",
    }
}

/// One entry of a hypothesis's `sources` (which sources an option comparison covers): every
/// source of a relation, or one source by its dataset id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceChoice {
    /// `matched`, `mismatched`, or `scratch` (the arms trained from random initialisation).
    Relation(Relation),
    /// One source of the matrix, by id.
    Source(String),
}

impl SourceChoice {
    /// A relation's name (`scratch` for the arms without pre-training) or else a source id.
    pub fn parse(text: &str) -> SourceChoice {
        match text {
            crate::experiment::SCRATCH => SourceChoice::Relation(Relation::None),
            "matched" => SourceChoice::Relation(Relation::Matched),
            "mismatched" => SourceChoice::Relation(Relation::Mismatched),
            id => SourceChoice::Source(id.to_string()),
        }
    }

    /// Whether the arm of `source`, whose relation to the target is `relation`, is chosen.
    pub fn covers(&self, source: &str, relation: Relation) -> bool {
        match self {
            SourceChoice::Relation(r) => *r == relation,
            SourceChoice::Source(id) => id == source,
        }
    }
}

impl std::fmt::Display for SourceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceChoice::Relation(Relation::None) => f.pad(crate::experiment::SCRATCH),
            SourceChoice::Relation(r) => f.pad(r.as_str()),
            SourceChoice::Source(id) => f.pad(id),
        }
    }
}

impl From<&str> for SourceChoice {
    fn from(text: &str) -> SourceChoice {
        SourceChoice::parse(text)
    }
}

/// A choice read as its text, as tests write it (`h.sources == vec!["matched".to_string()]`).
impl PartialEq<String> for SourceChoice {
    fn eq(&self, other: &String) -> bool {
        self.to_string() == *other
    }
}

/// Written as the text of the experiment file, so reports' contexts keep their bytes.
impl Serialize for SourceChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SourceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SourceChoice::parse(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_travel_as_their_numbers() {
        for o in TransferOption::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, o.number().to_string());
            assert_eq!(serde_json::from_str::<TransferOption>(&json).unwrap(), o);
        }
        assert!(TransferOption::Freeze.freezes() && !TransferOption::FineTune.freezes());
        assert_eq!(
            format!(
                "{:>3}|{:<3}|",
                TransferOption::Freeze,
                TransferOption::FineTune
            ),
            "  1|2  |"
        );
        let err = serde_json::from_str::<TransferOption>("3").unwrap_err();
        assert!(err.to_string().contains("found 3"), "{err}");
    }

    #[test]
    fn a_source_choice_covers_its_relation_or_its_source() {
        let scratch = SourceChoice::parse("scratch");
        assert!(scratch.covers("scratch", Relation::None));
        assert!(!scratch.covers("mnist", Relation::Matched));
        let matched = SourceChoice::parse("matched");
        assert!(matched.covers("mnist", Relation::Matched));
        assert!(!matched.covers("espeak", Relation::Mismatched));
        let one = SourceChoice::parse("espeak");
        assert!(one.covers("espeak", Relation::Mismatched));
        assert!(!one.covers("mnist", Relation::Matched));
        for text in ["scratch", "matched", "mismatched", "espeak"] {
            assert_eq!(SourceChoice::parse(text).to_string(), text);
        }
    }
}
