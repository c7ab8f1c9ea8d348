//! The output decoders (NanoDet, YOLOv5, YOLOv8, YOLOX) on any config and any tensors.
//!
//! The input is read as: format, class count, reg_max, input size, strides, thresholds,
//! then tensors of (rank, dims, value count, values); short input ends the list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mingchu::detect::decode::{DecodeConfig, Decoder, OutputFormat, OutputTensor, Thresholds};
use mingchu::detect::preprocess::{Letterbox, Placement};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes([self.u8()?, self.u8()?, self.u8()?, self.u8()?]))
    }
    fn dim(&mut self) -> Option<i64> {
        // Mostly small dims, sometimes the extremes.
        Some(match self.u8()? {
            0xff => i64::MAX,
            0xfe => i64::MIN,
            0xfd => -1,
            b => i64::from(self.u8()?) << 8 | i64::from(b),
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let (Some(kind), Some(classes), Some(reg_max), Some(w), Some(h), Some(n_strides)) =
        (b.u8(), b.u8(), b.u8(), b.u16(), b.u16(), b.u8())
    else {
        return;
    };
    let strides: Vec<u32> = (0..n_strides % 4).filter_map(|_| b.u8().map(u32::from)).collect();
    let num_classes = usize::from(classes % 16);
    let format = match kind % 4 {
        0 => OutputFormat::Nanodet {
            strides,
            reg_max: u32::from(reg_max % 16),
            num_classes,
            center_offset: b.f32().unwrap_or(0.5),
        },
        1 => OutputFormat::Yolov5 { num_classes },
        2 => OutputFormat::Yolov8 { num_classes },
        _ => OutputFormat::Yolox { strides, num_classes },
    };
    let mut config = DecodeConfig::new(format, u32::from(w % 512), u32::from(h % 512));
    config.thresholds = Thresholds::new(b.f32().unwrap_or(0.35));
    if let (Some(class), Some(t)) = (b.u8(), b.f32()) {
        config.thresholds = config.thresholds.with_class(usize::from(class % 16), t);
    }
    config.nms_iou = b.f32().unwrap_or(0.5);
    let letterbox =
        Letterbox::fit(1920, 1080, config.input_width.max(1), config.input_height.max(1), Placement::Center)
            .unwrap_or(Letterbox { scale: 1.0, pad_x: 0.0, pad_y: 0.0, src_w: 1920, src_h: 1080 });

    let mut shapes: Vec<Vec<i64>> = Vec::new();
    let mut values: Vec<Vec<f32>> = Vec::new();
    while shapes.len() < 4 {
        let Some(rank) = b.u8() else { break };
        let shape: Vec<i64> = (0..rank % 5).filter_map(|_| b.dim()).collect();
        let Some(count) = b.u16() else { break };
        // Values repeat the input's floats so a short input still fills a large tensor.
        let pool: Vec<f32> = (0..8).filter_map(|_| b.f32()).collect();
        let v = if pool.is_empty() {
            vec![0.0; usize::from(count)]
        } else {
            (0..usize::from(count) * 64).map(|i| pool[i % pool.len()]).collect()
        };
        shapes.push(shape);
        values.push(v);
    }
    let names = ["a", "b", "c", "d"];
    let tensors: Vec<OutputTensor<'_>> =
        shapes.iter().zip(&values).zip(names).map(|((shape, data), name)| OutputTensor { name, shape, data }).collect();
    let labels: Vec<String> = (0..3).map(|i| format!("l{i}")).collect();
    let Ok(mut decoder) = Decoder::new(config) else {
        return;
    };
    let mut out = Vec::new();
    if decoder.decode(&tensors, &letterbox, &labels, &mut out).is_ok() {
        for d in &out {
            assert!(d.bbox.x2 > d.bbox.x1 && d.bbox.y2 > d.bbox.y1, "{d:?}");
            assert!(!d.score.is_nan(), "{d:?}");
        }
    } else {
        assert!(out.is_empty());
    }
});
