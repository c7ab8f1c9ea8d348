//! Scripted scenes: real photographs shown over a kitchen background on a timeline.
//!
//! A scene is a TOML file (or a built-in one, see [`BUILTIN`]) like this:
//!
//! ```toml
//! background = "kitchen"   # "kitchen" (drawn in code) or an image path
//! loop = true              # start over after duration_s (default true)
//! duration_s = 60          # length of the timeline in seconds
//!
//! [[items]]                # any number, drawn in order (later ones on top)
//! photo = "astronaut.png"  # file in the photos dir (--photos), or an absolute path
//! crop = [0, 0, 1, 1]      # optional: x, y, width, height of the photo to use, 0..1
//! mirror = false           # optional: flip left-right
//! from_s = 10              # shown from this scene time (default 0) ...
//! to_s = 25                # ... until this one, exclusive (default: to the end)
//! x = 0.55                 # top-left corner, as a fraction of the picture width
//! y = 0.1                  # ... and height (may be outside 0..1 to cut the photo off)
//! height = 0.85            # height as a fraction of the picture height; the width
//!                          # follows the (cropped) photo's aspect ratio
//! ```
//!
//! A relative background path is also looked up in the photos dir. With
//! `loop = false` the timeline stops at `duration_s` and that picture stays.
//! Unknown keys are errors, so typos do not go unnoticed.
//!
//! Pictures are composed in RGB and converted to I420 (BT.601, limited range)
//! once per distinct set of visible items and picture size; see `scene_feed` for
//! how they are played.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, Rgba, RgbaImage};
use serde::Deserialize;

/// Scenes compiled into the binary: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] =
    &[("default", include_str!("../scenes/default.toml")), ("gallery", include_str!("../scenes/gallery.toml"))];

/// The script that fetches the photos the built-in scenes use.
pub const FETCH_SCRIPT: &str = "camera-sim/fetch-photos.sh";

/// The background drawn in code.
pub const KITCHEN: &str = "kitchen";

/// Most items a scene may have (visible sets are kept as a 64-bit mask).
pub const MAX_ITEMS: usize = 64;
/// Longest timeline accepted, one day.
const MAX_DURATION_S: f64 = 86_400.0;

/// A parsed and checked scene description.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// `"kitchen"` or an image path.
    #[serde(default = "kitchen")]
    pub background: String,
    /// Whether the timeline starts over after `duration_s`.
    #[serde(rename = "loop", default = "yes")]
    pub looped: bool,
    /// Length of the timeline in seconds.
    pub duration_s: f64,
    /// Photos placed on the timeline, bottom to top.
    #[serde(default)]
    pub items: Vec<Item>,
}

/// One photo on the timeline.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// File name in the photos dir, or an absolute path.
    pub photo: String,
    /// Part of the photo to show: x, y, width, height as fractions of the photo.
    pub crop: Option<[f64; 4]>,
    /// Flip the photo left-right.
    #[serde(default)]
    pub mirror: bool,
    /// Scene time at which it appears.
    #[serde(default)]
    pub from_s: f64,
    /// Scene time at which it goes (exclusive); the end of the timeline if absent.
    pub to_s: Option<f64>,
    /// Left edge as a fraction of the picture width.
    pub x: f64,
    /// Top edge as a fraction of the picture height.
    pub y: f64,
    /// Height as a fraction of the picture height.
    pub height: f64,
}

fn kitchen() -> String {
    KITCHEN.to_owned()
}

fn yes() -> bool {
    true
}

impl Scene {
    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let scene: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        scene.validate()?;
        Ok(scene)
    }

    /// The built-in scene called `name`, if there is one.
    pub fn builtin(name: &str) -> Option<Self> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Self::parse(text).unwrap_or_else(|e| panic!("built-in scene {n}: {e}")))
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.duration_s > 0.0 && self.duration_s <= MAX_DURATION_S) {
            return Err(format!("duration_s must be > 0 and <= {MAX_DURATION_S}, got {}", self.duration_s));
        }
        if self.background.trim().is_empty() {
            return Err("background must be \"kitchen\" or an image path".into());
        }
        if self.items.len() > MAX_ITEMS {
            return Err(format!("at most {MAX_ITEMS} items, got {}", self.items.len()));
        }
        for (i, item) in self.items.iter().enumerate() {
            item.validate().map_err(|e| format!("item {} ({}): {e}", i + 1, item.photo))?;
        }
        Ok(())
    }

    /// Scene time `elapsed_s` seconds after the timeline started (negative counts back from the end when looping).
    pub fn time_at(&self, elapsed_s: f64) -> f64 {
        if self.looped {
            let t = elapsed_s.rem_euclid(self.duration_s);
            // rem_euclid may round up to the modulus itself for tiny negative inputs.
            if t >= self.duration_s { 0.0 } else { t }
        } else {
            elapsed_s.clamp(0.0, self.duration_s)
        }
    }

    /// Bit `i` set for every item visible at scene time `t`.
    pub fn visible_at(&self, t: f64) -> u64 {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.from_s <= t && item.to_s.is_none_or(|end| t < end))
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// Photo names of the items in `mask`, bottom to top.
    pub fn photos_in(&self, mask: u64) -> Vec<String> {
        self.items
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, item)| item.photo.clone())
            .collect()
    }
}

impl Item {
    fn validate(&self) -> Result<(), String> {
        if self.photo.trim().is_empty() {
            return Err("photo must name a file".into());
        }
        let finite = |what: &str, v: f64| {
            if v.is_finite() { Ok(()) } else { Err(format!("{what} must be a number, got {v}")) }
        };
        finite("from_s", self.from_s)?;
        if self.from_s < 0.0 {
            return Err(format!("from_s must be >= 0, got {}", self.from_s));
        }
        if let Some(to) = self.to_s {
            finite("to_s", to)?;
            if to <= self.from_s {
                return Err(format!("to_s ({to}) must be after from_s ({})", self.from_s));
            }
        }
        for (what, v) in [("x", self.x), ("y", self.y)] {
            finite(what, v)?;
            if !(-1.0..=2.0).contains(&v) {
                return Err(format!("{what} must be in -1..=2, got {v}"));
            }
        }
        finite("height", self.height)?;
        if !(self.height > 0.0 && self.height <= 4.0) {
            return Err(format!("height must be > 0 and <= 4, got {}", self.height));
        }
        if let Some([x, y, w, h]) = self.crop {
            let ok = [x, y, w, h].iter().all(|v| v.is_finite())
                && x >= 0.0
                && y >= 0.0
                && w > 0.0
                && h > 0.0
                && x + w <= 1.0 + 1e-9
                && y + h <= 1.0 + 1e-9;
            if !ok {
                return Err(format!("crop [x, y, width, height] must lie inside [0, 1], got {:?}", [x, y, w, h]));
            }
        }
        Ok(())
    }
}

/// Error loading a scene or its pictures.
#[derive(Debug)]
pub struct SceneError(pub String);

impl std::fmt::Display for SceneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SceneError {}

/// A scene with its photos decoded and cropped, ready to compose pictures.
#[derive(Debug)]
pub struct SceneMedia {
    /// Built-in name or the file it came from.
    pub name: String,
    /// The timeline.
    pub scene: Scene,
    /// `None` for the kitchen drawn in code.
    background: Option<DynamicImage>,
    /// One per item, cropped and mirrored as asked.
    photos: Vec<RgbaImage>,
}

impl SceneMedia {
    /// Reads `spec` (a built-in name or a TOML path) and every picture it uses from `photos_dir`.
    pub fn load(spec: &str, photos_dir: &Path) -> Result<Self, SceneError> {
        let scene = match Scene::builtin(spec) {
            Some(scene) => scene,
            None => {
                let path = Path::new(spec);
                if !path.is_file() {
                    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                    return Err(SceneError(format!(
                        "scene {spec}: no such file and no built-in scene of that name (built-in: {})",
                        names.join(", ")
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| SceneError(format!("scene {spec}: {e}")))?;
                Scene::parse(&text).map_err(|e| SceneError(format!("scene {spec}: {e}")))?
            }
        };
        Self::with_scene(spec.to_owned(), scene, photos_dir)
    }

    /// Loads the pictures of an already parsed scene.
    pub fn with_scene(name: String, scene: Scene, photos_dir: &Path) -> Result<Self, SceneError> {
        let resolve = |p: &str| -> PathBuf {
            let path = Path::new(p);
            if path.is_absolute() { path.to_owned() } else { photos_dir.join(path) }
        };
        let background_path = (scene.background != KITCHEN).then(|| resolve(&scene.background));
        let mut missing: Vec<PathBuf> = background_path
            .iter()
            .chain(scene.items.iter().map(|i| resolve(&i.photo)).collect::<Vec<_>>().iter())
            .filter(|p| !p.is_file())
            .cloned()
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            return Err(SceneError(format!(
                "scene {name}: missing picture(s) {}; run `{FETCH_SCRIPT} {}` to fetch the photos, \
                 or point --photos at the directory that has them",
                list.join(", "),
                photos_dir.display()
            )));
        }

        let mut decoded: HashMap<PathBuf, DynamicImage> = HashMap::new();
        let mut open = |path: PathBuf| -> Result<DynamicImage, SceneError> {
            if let Some(img) = decoded.get(&path) {
                return Ok(img.clone());
            }
            let img = image::ImageReader::open(&path)
                .and_then(|r| r.with_guessed_format())
                .map_err(|e| SceneError(format!("scene {name}: {}: {e}", path.display())))?
                .decode()
                .map_err(|e| SceneError(format!("scene {name}: {}: {e}", path.display())))?;
            decoded.insert(path, img.clone());
            Ok(img)
        };
        let background = background_path.map(&mut open).transpose()?;
        let mut photos = Vec::with_capacity(scene.items.len());
        for item in &scene.items {
            let img = open(resolve(&item.photo))?;
            photos.push(prepare(&img, item));
        }
        Ok(Self { name, scene, background, photos })
    }

    /// Composes the picture with the items of `mask` at `width` x `height`.
    pub fn compose(&self, mask: u64, width: u32, height: u32) -> RgbaImage {
        let mut canvas = match &self.background {
            None => draw_kitchen(width, height),
            Some(img) => img.resize_to_fill(width, height, FilterType::Triangle).to_rgba8(),
        };
        for (i, (item, photo)) in self.scene.items.iter().zip(&self.photos).enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            let th = ((item.height * f64::from(height)).round() as u32).max(1);
            let aspect = f64::from(photo.width()) / f64::from(photo.height());
            let tw = ((f64::from(th) * aspect).round() as u32).max(1);
            let scaled = imageops::resize(photo, tw, th, FilterType::Triangle);
            let x = (item.x * f64::from(width)).round() as i64;
            let y = (item.y * f64::from(height)).round() as i64;
            imageops::overlay(&mut canvas, &scaled, x, y);
        }
        canvas
    }
}

/// Crops and mirrors a decoded photo as `item` asks.
fn prepare(img: &DynamicImage, item: &Item) -> RgbaImage {
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = match item.crop {
        None => rgba,
        Some([cx, cy, cw, ch]) => {
            let px = |v: f64, full: u32| ((v * f64::from(full)).round() as u32).min(full);
            let (x, y) = (px(cx, w).min(w - 1), px(cy, h).min(h - 1));
            let cw = px(cw, w).clamp(1, w - x);
            let ch = px(ch, h).clamp(1, h - y);
            imageops::crop_imm(&rgba, x, y, cw, ch).to_image()
        }
    };
    if item.mirror {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// Byte layout of an I420 picture as GStreamer lays it out without video meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I420Layout {
    /// Bytes per row of Y, U and V.
    pub strides: [usize; 3],
    /// Where Y, U and V start.
    pub offsets: [usize; 3],
    /// Total size in bytes.
    pub size: usize,
}

/// Converts `rgba` (alpha ignored) to I420, BT.601 limited range, into `layout`.
pub fn to_i420(rgba: &RgbaImage, layout: &I420Layout) -> Vec<u8> {
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    let mut out = vec![0u8; layout.size];
    let raw = rgba.as_raw();
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 4;
        (i32::from(raw[i]), i32::from(raw[i + 1]), i32::from(raw[i + 2]))
    };
    let [ys, us, vs] = layout.strides;
    let [yo, uo, vo] = layout.offsets;
    for y in 0..h {
        let row = &mut out[yo + y * ys..yo + y * ys + w];
        for (x, dst) in row.iter_mut().enumerate() {
            let (r, g, b) = px(x, y);
            *dst = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
        }
    }
    for cy in 0..h.div_ceil(2) {
        for cx in 0..w.div_ceil(2) {
            let (mut r, mut g, mut b, mut n) = (0, 0, 0, 0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (x, y) = (cx * 2 + dx, cy * 2 + dy);
                if x < w && y < h {
                    let p = px(x, y);
                    r += p.0;
                    g += p.1;
                    b += p.2;
                    n += 1;
                }
            }
            let (r, g, b) = (r / n, g / n, b / n);
            out[uo + cy * us + cx] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
            out[vo + cy * vs + cx] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
        }
    }
    out
}

/// Cheap deterministic hash for per-tile and per-speck variation.
fn hash(a: u32, b: u32) -> u32 {
    let mut h = a.wrapping_mul(0x9e37_79b1) ^ b.wrapping_mul(0x85eb_ca77);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h
}

fn shade(c: [u8; 3], delta: i32) -> Rgba<u8> {
    let f = |v: u8| (i32::from(v) + delta).clamp(0, 255) as u8;
    Rgba([f(c[0]), f(c[1]), f(c[2]), 255])
}

/// Fills the rectangle given in fractions of the picture, clipped to it.
fn fill(img: &mut RgbaImage, rect: [f64; 4], color: Rgba<u8>) {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let x0 = (rect[0] * w).round().clamp(0.0, w) as u32;
    let y0 = (rect[1] * h).round().clamp(0.0, h) as u32;
    let x1 = (rect[2] * w).round().clamp(0.0, w) as u32;
    let y1 = (rect[3] * h).round().clamp(0.0, h) as u32;
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x, y, color);
        }
    }
}

/// Fronts of a row of cabinet doors between `x0..x1`, `y0..y1` (fractions).
fn cabinets(img: &mut RgbaImage, x0: f64, x1: f64, y0: f64, y1: f64, doors: u32, handle_top: bool) {
    let wood = [176, 128, 84];
    let aspect = f64::from(img.height()) / f64::from(img.width());
    fill(img, [x0, y0, x1, y1], shade(wood, -40));
    let dw = (x1 - x0) / f64::from(doors);
    let gap = 0.006 * aspect;
    for d in 0..doors {
        let dx0 = x0 + dw * f64::from(d) + gap;
        let dx1 = x0 + dw * f64::from(d + 1) - gap;
        fill(img, [dx0, y0 + 0.008, dx1, y1 - 0.008], shade(wood, 0));
        let inset = 0.02 * aspect;
        fill(img, [dx0 + inset, y0 + 0.03, dx1 - inset, y1 - 0.03], shade(wood, -14));
        // Handle near the edge where neighbouring doors meet.
        let hx = if d % 2 == 0 { dx1 - 0.012 * aspect } else { dx0 + 0.008 * aspect };
        let (hy0, hy1) = if handle_top { (y0 + 0.04, y0 + 0.11) } else { (y1 - 0.11, y1 - 0.04) };
        fill(img, [hx, hy0, hx + 0.005 * aspect, hy1], Rgba([200, 203, 208, 255]));
    }
}

/// A plain kitchen: tiled wall, wall cabinets, a window, a stone counter and base cabinets.
pub fn draw_kitchen(width: u32, height: u32) -> RgbaImage {
    // Opaque base so rounding never leaves a transparent row between parts.
    let mut img = RgbaImage::from_pixel(width, height, Rgba([120, 84, 52, 255]));
    let counter_top = 0.63;
    // Tiled wall with grout lines; the tile is square whatever the picture's aspect.
    let tile = (f64::from(height) / 10.0).max(4.0);
    let grout = (f64::from(height) / 360.0).max(1.0);
    let wall_end = (counter_top * f64::from(height)) as u32;
    for y in 0..wall_end.min(height) {
        for x in 0..width {
            let (fx, fy) = (f64::from(x) / tile, f64::from(y) / tile);
            let (tx, ty) = (fx.floor() as u32, fy.floor() as u32);
            let in_grout = (fx - fx.floor()) * tile < grout || (fy - fy.floor()) * tile < grout;
            let color = if in_grout {
                shade([196, 196, 190], 0)
            } else {
                shade([234, 231, 222], (hash(tx, ty) % 9) as i32 - 4)
            };
            img.put_pixel(x, y, color);
        }
    }
    // Window between the wall cabinets.
    fill(&mut img, [0.40, 0.06, 0.60, 0.40], Rgba([245, 245, 242, 255]));
    fill(&mut img, [0.41, 0.08, 0.59, 0.38], Rgba([170, 205, 230, 255]));
    fill(&mut img, [0.41, 0.23, 0.59, 0.38], Rgba([150, 190, 220, 255]));
    fill(&mut img, [0.497, 0.08, 0.503, 0.38], Rgba([245, 245, 242, 255]));
    fill(&mut img, [0.41, 0.225, 0.59, 0.235], Rgba([245, 245, 242, 255]));
    // Wall cabinets.
    cabinets(&mut img, 0.0, 0.36, 0.0, 0.27, 3, false);
    cabinets(&mut img, 0.64, 1.0, 0.0, 0.27, 3, false);
    fill(&mut img, [0.0, 0.27, 0.36, 0.28], Rgba([150, 145, 135, 255]));
    fill(&mut img, [0.64, 0.27, 1.0, 0.28], Rgba([150, 145, 135, 255]));
    // Speckled stone counter with a lighter front edge.
    let (c0, c1) = (counter_top, counter_top + 0.045);
    let (y0, y1) = ((c0 * f64::from(height)) as u32, ((c1 * f64::from(height)) as u32).min(height));
    for y in y0..y1 {
        for x in 0..width {
            let speck = hash(x, y) % 23;
            let delta = match speck {
                0 => 40,
                1 | 2 => -12,
                _ => 0,
            };
            img.put_pixel(x, y, shade([72, 74, 78], delta));
        }
    }
    fill(&mut img, [0.0, c1 - 0.008, 1.0, c1], Rgba([120, 122, 128, 255]));
    // Base cabinets and plinth.
    cabinets(&mut img, 0.0, 1.0, c1, 0.95, 6, true);
    fill(&mut img, [0.0, 0.95, 1.0, 1.0], Rgba([58, 52, 46, 255]));
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(items: &str) -> Result<Scene, String> {
        Scene::parse(&format!("duration_s = 30\n{items}"))
    }

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTIN {
            let s = Scene::builtin(name).expect("built-in");
            assert!(!s.items.is_empty(), "{name}");
        }
        assert!(Scene::builtin("nope").is_none());
    }

    #[test]
    fn default_timeline() {
        let s = Scene::builtin("default").unwrap();
        assert_eq!(s.duration_s, 60.0);
        assert!(s.looped);
        assert_eq!(s.visible_at(5.0), 0);
        assert_eq!(s.photos_in(s.visible_at(15.0)), ["faceapi-sample2.jpg"]);
        assert_eq!(s.photos_in(s.visible_at(30.0)), ["chelsea.png"]);
        assert_eq!(s.visible_at(45.0), 0);
        assert_eq!(s.visible_at(s.time_at(75.0)), s.visible_at(15.0));
    }

    #[test]
    fn defaults_apply() {
        let s = scene("[[items]]\nphoto = \"a.png\"\nx = 0\ny = 0\nheight = 1").unwrap();
        assert_eq!(s.background, KITCHEN);
        assert!(s.looped);
        assert_eq!(s.items[0].from_s, 0.0);
        assert_eq!(s.items[0].to_s, None);
        assert_eq!(s.visible_at(29.9), 1);
    }

    #[test]
    fn time_loops_or_holds() {
        let mut s = scene("").unwrap();
        assert_eq!(s.time_at(31.0), 1.0);
        assert_eq!(s.time_at(-1.0), 29.0);
        s.looped = false;
        assert_eq!(s.time_at(31.0), 30.0);
        assert_eq!(s.time_at(-1.0), 0.0);
    }

    #[test]
    fn visibility_is_half_open() {
        let s = scene(
            "[[items]]\nphoto = \"a.png\"\nfrom_s = 5\nto_s = 10\nx = 0\ny = 0\nheight = 1\n\
             [[items]]\nphoto = \"b.png\"\nfrom_s = 8\nx = 0\ny = 0\nheight = 1",
        )
        .unwrap();
        assert_eq!(s.visible_at(4.9), 0);
        assert_eq!(s.visible_at(5.0), 0b01);
        assert_eq!(s.visible_at(9.0), 0b11);
        assert_eq!(s.visible_at(10.0), 0b10);
        assert_eq!(s.photos_in(0b11), ["a.png", "b.png"]);
    }

    #[test]
    fn bad_scenes_rejected() {
        let item = |extra: &str| format!("[[items]]\nphoto = \"a.png\"\n{extra}");
        for bad in [
            Scene::parse("duration_s = 0"),
            Scene::parse("duration_s = 10\nbogus = 1"),
            scene(&item("x = 0\ny = 0")),
            scene(&item("x = 0\ny = 0\nheight = 0")),
            scene(&item("x = 5\ny = 0\nheight = 1")),
            scene(&item("x = 0\ny = 0\nheight = 1\nfrom_s = 5\nto_s = 5")),
            scene(&item("x = 0\ny = 0\nheight = 1\nfrom_s = -1")),
            scene(&item("x = 0\ny = 0\nheight = 1\ncrop = [0.5, 0, 0.6, 1]")),
            scene(&item("x = 0\ny = 0\nheight = 1\ncolour = 1")),
        ] {
            assert!(bad.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_photos_name_the_fetch_script() {
        let dir = std::env::temp_dir().join(format!("camera-sim-no-photos-{}", std::process::id()));
        let err = SceneMedia::load("default", &dir).unwrap_err().to_string();
        assert!(err.contains("faceapi-sample2.jpg"), "{err}");
        assert!(err.contains("chelsea.png"), "{err}");
        assert!(err.contains(FETCH_SCRIPT), "{err}");
        let err = SceneMedia::load("/nonexistent/scene.toml", &dir).unwrap_err().to_string();
        assert!(err.contains("built-in"), "{err}");
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("camera-sim-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn composes_cropped_mirrored_photo() {
        let dir = temp_dir("compose");
        // Left half red, right half blue.
        let photo =
            RgbaImage::from_fn(40, 20, |x, _| if x < 20 { Rgba([255, 0, 0, 255]) } else { Rgba([0, 0, 255, 255]) });
        photo.save(dir.join("rb.png")).unwrap();
        let s = scene(
            "[[items]]\nphoto = \"rb.png\"\ncrop = [0, 0, 0.5, 1]\nx = 0.5\ny = 0.5\nheight = 0.5\n\
             [[items]]\nphoto = \"rb.png\"\nmirror = true\nx = 0\ny = 0\nheight = 0.25\nfrom_s = 10",
        )
        .unwrap();
        let media = SceneMedia::with_scene("t".into(), s, &dir).unwrap();
        let img = media.compose(0b01, 64, 64);
        // Cropped to the red half: 16x32 at (32, 32).
        assert_eq!(img.get_pixel(40, 48).0, [255, 0, 0, 255]);
        assert_ne!(img.get_pixel(20, 48).0, [255, 0, 0, 255]);
        let img = media.compose(0b10, 64, 64);
        // Mirrored: blue on the left, 32x16 at (0, 0).
        assert_eq!(img.get_pixel(4, 8).0, [0, 0, 255, 255]);
        assert_eq!(img.get_pixel(28, 8).0, [255, 0, 0, 255]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn i420_conversion_of_known_colours() {
        let layout = I420Layout { strides: [4, 4, 4], offsets: [0, 8, 12], size: 16 };
        let white = RgbaImage::from_pixel(4, 2, Rgba([255, 255, 255, 255]));
        let out = to_i420(&white, &layout);
        assert!(out[..8].iter().all(|&y| y == 235), "{out:?}");
        assert_eq!(&out[8..10], &[128, 128]);
        assert_eq!(&out[12..14], &[128, 128]);
        let red = RgbaImage::from_pixel(4, 2, Rgba([255, 0, 0, 255]));
        let out = to_i420(&red, &layout);
        assert_eq!(out[0], 82);
        assert_eq!(out[8], 90);
        assert_eq!(out[12], 240);
    }

    #[test]
    fn kitchen_fills_any_size() {
        for (w, h) in [(16, 16), (640, 360), (1280, 720)] {
            let k = draw_kitchen(w, h);
            assert_eq!(k.dimensions(), (w, h));
            assert!(k.pixels().all(|p| p.0[3] == 255));
        }
    }
}
