//! The event snapshot: the sampled picture with boxes and labels drawn, as JPEG.

use font8x8::legacy::BASIC_LEGACY;
use image::{ImageBuffer, Rgb, RgbImage};

use crate::detect::BBox;

/// A box to draw with its caption.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Where.
    pub bbox: BBox,
    /// Caption, ASCII (e.g. `person 0.87`).
    pub caption: String,
    /// Whether this is the offending subject (drawn in red) or context (amber).
    pub primary: bool,
}

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the snapshot: {0}")]
pub struct SnapshotError(String);

/// Draws `marks` onto an RGB picture (`stride` bytes per row) and encodes JPEG.
pub fn render(rgb: &[u8], width: u32, height: u32, stride: usize, marks: &[Mark]) -> Result<Vec<u8>, SnapshotError> {
    let row = width as usize * 3;
    if stride < row || rgb.len() < stride * height as usize {
        return Err(SnapshotError(format!("picture buffer too small for {width}x{height}")));
    }
    let mut packed = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        packed.extend_from_slice(&rgb[y * stride..y * stride + row]);
    }
    let mut img: RgbImage =
        ImageBuffer::from_raw(width, height, packed).ok_or_else(|| SnapshotError("bad picture size".into()))?;
    let thickness = (width.max(height) / 320).clamp(2, 6);
    let scale = (width.max(height) / 640).clamp(1, 4);
    for m in marks {
        let colour = if m.primary { Rgb([230, 40, 40]) } else { Rgb([250, 180, 0]) };
        let b = m.bbox.clamp(width as f32 - 1.0, height as f32 - 1.0);
        draw_rect(&mut img, b, thickness, colour);
        let text_y = if b.y1 as u32 >= 8 * scale + 4 { b.y1 as u32 - 8 * scale - 4 } else { b.y1 as u32 + thickness };
        draw_text(&mut img, b.x1 as u32, text_y, &m.caption, scale, colour);
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&img)
        .map_err(|e| SnapshotError(e.to_string()))?;
    Ok(out)
}

fn draw_rect(img: &mut RgbImage, b: BBox, t: u32, c: Rgb<u8>) {
    let (w, h) = img.dimensions();
    let (x1, y1, x2, y2) = (b.x1 as u32, b.y1 as u32, b.x2 as u32, b.y2 as u32);
    for k in 0..t {
        for x in x1..=x2.min(w - 1) {
            for y in [y1 + k, y2.saturating_sub(k)] {
                if y < h {
                    img.put_pixel(x, y, c);
                }
            }
        }
        for y in y1..=y2.min(h - 1) {
            for x in [x1 + k, x2.saturating_sub(k)] {
                if x < w {
                    img.put_pixel(x, y, c);
                }
            }
        }
    }
}

fn draw_text(img: &mut RgbImage, x0: u32, y0: u32, text: &str, scale: u32, bg: Rgb<u8>) {
    let (w, h) = img.dimensions();
    let cell = 8 * scale;
    // A filled band behind the caption keeps it readable on any picture.
    let band_w = (text.chars().count() as u32 * cell + 4).min(w.saturating_sub(x0));
    for y in y0..(y0 + cell + 4).min(h) {
        for x in x0..x0 + band_w {
            img.put_pixel(x, y, bg);
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let Some(glyph) = BASIC_LEGACY.get(ch as usize) else { continue };
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8u32 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let x = x0 + 2 + i as u32 * cell + gx * scale + sx;
                        let y = y0 + 2 + gy as u32 * scale + sy;
                        if x < w && y < h {
                            img.put_pixel(x, y, Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_box_and_encodes_jpeg() {
        let (w, h) = (320u32, 240u32);
        let rgb = vec![0u8; (w * h * 3) as usize];
        let marks = [Mark { bbox: BBox::new(40.0, 60.0, 200.0, 200.0), caption: "cat 0.9".into(), primary: true }];
        let jpeg = render(&rgb, w, h, w as usize * 3, &marks).expect("jpeg");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let img = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
        let p = img.get_pixel(120, 200);
        assert!(p[0] > 120 && p[0] > p[1] + 60, "box edge is red: {p:?}");
        assert!(img.get_pixel(120, 150)[0] < 40, "inside stays dark");
        let band = img.get_pixel(44, 52);
        assert!(band[0] > 120, "caption band above the box: {band:?}");
    }

    #[test]
    fn rejects_short_buffers_and_survives_odd_boxes() {
        assert!(render(&[0u8; 10], 64, 48, 192, &[]).is_err());
        let rgb = vec![0u8; 64 * 48 * 3];
        let odd = [Mark { bbox: BBox::new(-50.0, f32::NAN, 1e9, 5.0), caption: "x".into(), primary: false }];
        assert!(render(&rgb, 64, 48, 192, &odd).is_ok());
    }
}
