//! Reading parameter values out of a module by path (a `Network`'s variant left out), for tests of transfer and freezing, and
//! forcing lazily initialised parameters to take their values now.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// Every float parameter of a module by dotted path (`backbone.encoder.layers.0...`), as f32.
pub type ParamSnapshot = BTreeMap<String, Vec<f32>>;

struct Collector {
    path: Vec<String>,
    /// Whether each module entered added a segment (enum variants do not).
    pushed: Vec<bool>,
    out: ParamSnapshot,
    read_values: bool,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // The variant of a `Network` adds no segment, so a path reads the same whichever
        // network holds it (`stem.Patch.projection…`, `net.conv_stem…`). Other enums keep
        // theirs: recorded weight hashes are made over these paths.
        let segment = container_type != "Enum:Network";
        if segment {
            self.path.push(name.to_string());
        }
        self.pushed.push(segment);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        if self.pushed.pop() == Some(true) {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // `val()` runs a lazy initialiser if it has not run yet.
        let value = param.val();
        if self.read_values {
            let values = value
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 parameter");
            let mut key = self.path.join(".");
            let mut unique = key.clone();
            let mut i = 1;
            while self.out.contains_key(&unique) {
                unique = format!("{key}#{i}");
                i += 1;
            }
            key = unique;
            self.out.insert(key, values);
        }
    }
}

/// Copies every float parameter of `module` out by path.
pub fn snapshot<M: Module>(module: &M) -> ParamSnapshot {
    let mut c = Collector {
        path: Vec::new(),
        pushed: Vec::new(),
        out: BTreeMap::new(),
        read_values: true,
    };
    module.visit(&mut c);
    c.out
}

/// Draws every lazily initialised parameter of `module` now, in a fixed order.
pub fn materialise<M: Module>(module: &M) {
    let mut c = Collector {
        path: Vec::new(),
        pushed: Vec::new(),
        out: BTreeMap::new(),
        read_values: false,
    };
    module.visit(&mut c);
}
