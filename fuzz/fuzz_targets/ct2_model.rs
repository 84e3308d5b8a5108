//! A model file, as a download or a tampered cache may hold it: parsing, reading its
//! dimensions and its weights give a model or an error, never a panic or an allocation
//! the file's size does not back.
#![no_main]

use ai::asr::ct2::Ct2Model;
use candle_core::{DType, Device};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Ct2Model::parse(data.to_vec()) else { return };
    if model.config().is_ok() {
        let _ = model.candle_weights(DType::F32, &Device::Cpu);
    }
});
