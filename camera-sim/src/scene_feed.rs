//! Plays a [`SceneMedia`] on every camera through the appsrc of its media.
//!
//! One player thread ticks at the cameras' frame rate. Each tick it works out,
//! for every camera with a running media, which items are visible at that
//! camera's scene time, and pushes the I420 picture for that set and the
//! camera's current size into the camera's appsrcs. Pictures are cached by
//! (visible set, size), so a steady scene costs one buffer reference per frame;
//! the RGB→I420 work happens only when the set or the size changes.
//!
//! Composing runs on a second thread so the player never misses ticks: until a
//! new picture is ready the previous one is repeated (in an unoptimised build
//! that can take a moment). Every visible set of the timeline is composed at the
//! start-up size right away, in the background.
//!
//! Scene time runs from the moment the simulator started, plus a per-camera
//! offset (`--scene-offset-s` staggers cameras; the control API can seek).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tracing::{debug, info, warn};

use crate::camera::Camera;
use crate::live_push::push_now;
use crate::scene::{I420Layout, SceneMedia, to_i420};

/// Composed pictures kept before the cache is emptied (each 1.4 MB at 720p).
const MAX_CACHED: usize = 48;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which picture: the visible items and the size.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Key {
    mask: u64,
    width: u32,
    height: u32,
}

/// A composed picture with the caps that describe it.
#[derive(Clone, Debug)]
struct Frame {
    buffer: gst::Buffer,
    caps: gst::Caps,
}

/// Pictures composed so far and those asked for.
#[derive(Debug, Default)]
struct Frames {
    cache: Mutex<HashMap<Key, Frame>>,
    /// Keys to compose; urgent ones (wanted by a camera now) go to the front.
    queue: Mutex<VecDeque<Key>>,
    queued: Mutex<HashSet<Key>>,
    wake: Condvar,
}

impl Frames {
    fn get(&self, key: Key) -> Option<Frame> {
        lock(&self.cache).get(&key).cloned()
    }

    fn request(&self, key: Key, urgent: bool) {
        if !lock(&self.queued).insert(key) {
            return;
        }
        let mut queue = lock(&self.queue);
        if urgent {
            queue.push_front(key);
        } else {
            queue.push_back(key);
        }
        self.wake.notify_one();
    }
}

/// Scene state of one camera, and the appsrcs of its running media.
#[derive(Debug)]
pub struct SceneFeed {
    camera: Arc<Camera>,
    targets: Mutex<Vec<glib::WeakRef<gst_app::AppSrc>>>,
    /// Added to the time since start to get this camera's scene time.
    offset_s: Mutex<f64>,
    /// Key of the picture pushed last.
    shown: Mutex<Option<Key>>,
}

impl SceneFeed {
    /// Starts feeding pictures into `appsrc` until its media goes away.
    pub fn attach(&self, appsrc: &gst_app::AppSrc) {
        let mut targets = lock(&self.targets);
        targets.retain(|t| t.upgrade().is_some());
        targets.push(appsrc.downgrade());
    }

    fn live_targets(&self) -> Vec<gst_app::AppSrc> {
        let mut targets = lock(&self.targets);
        targets.retain(|t| t.upgrade().is_some());
        targets.iter().filter_map(|t| t.upgrade()).collect()
    }
}

/// What a camera shows now, for the control API.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneStatus {
    /// Scene name (built-in name or file).
    pub scene: String,
    /// The camera's position on the timeline, seconds.
    pub time_s: f64,
    /// Length of the timeline, seconds.
    pub duration_s: f64,
    /// Photos visible at `time_s`, bottom to top.
    pub showing: Vec<String>,
}

/// The running scene player and composer.
#[derive(Debug)]
pub struct ScenePlayer {
    media: Arc<SceneMedia>,
    feeds: Vec<Arc<SceneFeed>>,
    started: Instant,
    stop: Arc<AtomicBool>,
    frames: Arc<Frames>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ScenePlayer {
    /// Starts playing `media` for `cameras`; camera `i` starts `i * offset_step_s` into the scene.
    pub fn start(
        media: Arc<SceneMedia>,
        cameras: &[Arc<Camera>],
        offset_step_s: f64,
        fps: u32,
    ) -> Result<Self, String> {
        let feeds: Vec<Arc<SceneFeed>> = cameras
            .iter()
            .enumerate()
            .map(|(i, camera)| {
                Arc::new(SceneFeed {
                    camera: camera.clone(),
                    targets: Mutex::new(Vec::new()),
                    offset_s: Mutex::new(i as f64 * offset_step_s),
                    shown: Mutex::new(None),
                })
            })
            .collect();
        let player = Self {
            media,
            feeds,
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            frames: Arc::new(Frames::default()),
            threads: Mutex::new(Vec::new()),
        };

        // Compose every picture of the timeline at the start-up size in the background.
        if let Some(camera) = cameras.first() {
            let (width, height) = camera.size();
            for mask in timeline_masks(&player.media) {
                player.frames.request(Key { mask, width, height }, false);
            }
        }

        let composer = {
            let (media, frames, stop) = (player.media.clone(), player.frames.clone(), player.stop.clone());
            std::thread::Builder::new()
                .name("scene-compose".into())
                .spawn(move || compose_loop(&media, &frames, &stop, fps))
                .map_err(|e| format!("cannot start scene composer: {e}"))?
        };
        lock(&player.threads).push(composer);
        let ticker = {
            let (media, frames, stop, feeds, started) = (
                player.media.clone(),
                player.frames.clone(),
                player.stop.clone(),
                player.feeds.clone(),
                player.started,
            );
            std::thread::Builder::new()
                .name("scene-play".into())
                .spawn(move || play_loop(&media, &frames, &stop, &feeds, started, fps))
                .map_err(|e| format!("cannot start scene player: {e}"))?
        };
        lock(&player.threads).push(ticker);
        info!(
            scene = %player.media.name,
            items = player.media.scene.items.len(),
            duration_s = player.media.scene.duration_s,
            "playing scene"
        );
        Ok(player)
    }

    /// The feed of camera number `index` (position in the camera list).
    pub fn feed(&self, index: usize) -> Option<Arc<SceneFeed>> {
        self.feeds.get(index).cloned()
    }

    fn feed_of(&self, camera: &str) -> Option<&Arc<SceneFeed>> {
        self.feeds.iter().find(|f| f.camera.name() == camera)
    }

    fn time_of(&self, feed: &SceneFeed, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        self.media.scene.time_at(elapsed + *lock(&feed.offset_s))
    }

    /// Where camera `camera` is on the timeline and what it shows; `None` for an unknown camera.
    pub fn status(&self, camera: &str) -> Option<SceneStatus> {
        let feed = self.feed_of(camera)?;
        let time_s = self.time_of(feed, Instant::now());
        let scene = &self.media.scene;
        Some(SceneStatus {
            scene: self.media.name.clone(),
            time_s,
            duration_s: scene.duration_s,
            showing: scene.photos_in(scene.visible_at(time_s)),
        })
    }

    /// Moves camera `camera` to scene time `t` (seconds); `None` for an unknown camera.
    pub fn seek(&self, camera: &str, t: f64) -> Option<SceneStatus> {
        let feed = self.feed_of(camera)?;
        let elapsed = self.started.elapsed().as_secs_f64();
        *lock(&feed.offset_s) = t - elapsed;
        info!(camera, time_s = t, "scene seek");
        self.status(camera)
    }

    /// Stops both threads and waits for them (also done on drop).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.frames.wake.notify_all();
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for ScenePlayer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every distinct visible set on the timeline, in order of first appearance.
fn timeline_masks(media: &SceneMedia) -> Vec<u64> {
    let scene = &media.scene;
    let mut times = vec![0.0];
    for item in &scene.items {
        times.push(item.from_s);
        times.extend(item.to_s);
    }
    times.retain(|t| *t <= scene.duration_s);
    times.sort_by(f64::total_cmp);
    let mut masks = Vec::new();
    for t in times {
        let mask = scene.visible_at(t);
        if !masks.contains(&mask) {
            masks.push(mask);
        }
    }
    masks
}

/// Caps and I420 layout GStreamer uses for a picture of this size.
fn video_info(width: u32, height: u32, fps: u32) -> Result<(gst::Caps, I420Layout), String> {
    let colorimetry: gst_video::VideoColorimetry = "bt601".parse().map_err(|e| format!("colorimetry: {e}"))?;
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
        .fps(gst::Fraction::new(i32::try_from(fps).unwrap_or(25), 1))
        .colorimetry(&colorimetry)
        .build()
        .map_err(|e| e.to_string())?;
    let caps = info.to_caps().map_err(|e| e.to_string())?;
    let stride = |i: usize| usize::try_from(info.stride()[i]).unwrap_or(0);
    let layout = I420Layout {
        strides: [stride(0), stride(1), stride(2)],
        offsets: [info.offset()[0], info.offset()[1], info.offset()[2]],
        size: info.size(),
    };
    Ok((caps, layout))
}

fn compose_loop(media: &SceneMedia, frames: &Frames, stop: &AtomicBool, fps: u32) {
    loop {
        let key = {
            let mut queue = lock(&frames.queue);
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(key) = queue.pop_front() {
                    break key;
                }
                queue = frames.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let begun = Instant::now();
        let frame = video_info(key.width, key.height, fps).map(|(caps, layout)| {
            let rgba = media.compose(key.mask, key.width, key.height);
            let mut buffer = gst::Buffer::from_mut_slice(to_i420(&rgba, &layout));
            buffer
                .get_mut()
                .expect("new buffer is writable")
                .set_duration(gst::ClockTime::SECOND / u64::from(fps.max(1)));
            Frame { buffer, caps }
        });
        match frame {
            Ok(frame) => {
                debug!(
                    showing = ?media.scene.photos_in(key.mask),
                    width = key.width,
                    height = key.height,
                    ms = begun.elapsed().as_millis(),
                    "scene picture composed"
                );
                let mut cache = lock(&frames.cache);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(key, frame);
            }
            Err(e) => {
                warn!(error = %e, width = key.width, height = key.height, "cannot compose scene picture")
            }
        }
        lock(&frames.queued).remove(&key);
    }
}

fn play_loop(
    media: &SceneMedia,
    frames: &Frames,
    stop: &AtomicBool,
    feeds: &[Arc<SceneFeed>],
    started: Instant,
    fps: u32,
) {
    let period = Duration::from_secs(1) / fps.max(1);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started).as_secs_f64();
        for feed in feeds {
            tick(media, frames, feed, elapsed);
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > period * 5 {
            // Far behind (machine busy, or suspended): do not burst to catch up.
            next = now;
        }
    }
}

fn tick(media: &SceneMedia, frames: &Frames, feed: &SceneFeed, elapsed: f64) {
    let targets = feed.live_targets();
    if targets.is_empty() {
        return;
    }
    let scene = &media.scene;
    let t = scene.time_at(elapsed + *lock(&feed.offset_s));
    let (width, height) = feed.camera.size();
    let want = Key { mask: scene.visible_at(t), width, height };
    let mut shown = lock(&feed.shown);
    let frame = match frames.get(want) {
        Some(frame) => {
            if *shown != Some(want) {
                if shown.is_none_or(|s| s.mask != want.mask) {
                    info!(
                        camera = feed.camera.name(),
                        scene_time_s = (t * 10.0).round() / 10.0,
                        showing = ?scene.photos_in(want.mask),
                        "scene"
                    );
                }
                *shown = Some(want);
            }
            frame
        }
        None => {
            frames.request(want, true);
            // Repeat the previous picture until the new one is ready.
            match shown.and_then(|key| frames.get(key)) {
                Some(frame) => frame,
                None => return,
            }
        }
    };
    drop(shown);
    for src in targets {
        if src.caps().as_ref() != Some(&frame.caps) {
            src.set_caps(Some(&frame.caps));
        }
        if let Err(e) = push_now(&src, &frame.buffer) {
            debug!(camera = feed.camera.name(), error = ?e, "scene picture not accepted");
        }
    }
}
