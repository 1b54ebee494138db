//! Change detection for schedules: a capture against the previous run's, pixel by pixel, in the
//! way of pixelmatch (mapbox/pixelmatch, the screenshot-testing standard): a perceptual colour
//! distance in YIQ space (Kotsarenko and Ramos, 2010) with a threshold, and pixels that differ
//! only by anti-aliasing (Vyšniauskas, 2009) not counted, so that a page rendered again with the
//! same content scores 0 where a byte comparison would not.

use std::io::Cursor;

use image::{ImageFormat, Rgba, RgbaImage};

/// The per-pixel colour threshold, 0 to 1 (pixelmatch's default): smaller is more sensitive.
const PIXEL_THRESHOLD: f64 = 0.1;
/// Images compared at most, in pixels each (a 1920 x 10000 full page); larger ones are not.
const MAX_PIXELS: u64 = 20_000_000;
/// Unchanged pixels in the diff image: the capture in grey, faded toward white.
const FADE: f64 = 0.1;
const CHANGED: Rgba<u8> = Rgba([255, 0, 0, 255]);
const ANTIALIASED: Rgba<u8> = Rgba([255, 255, 0, 255]);

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Changed pixels over all pixels, 0 to 1 (1 when the sizes differ).
    pub score: f64,
    /// More than the schedule's threshold changed.
    pub changed: bool,
    /// A PNG of the capture's size: changed pixels red, anti-aliasing yellow, the rest faded.
    /// None when the sizes differ.
    pub image: Option<Vec<u8>>,
}

/// Compares `current` with `previous` (encoded images of any format the worker writes). A
/// change is a fraction of changed pixels over `threshold`. CPU-bound: run it off the runtime.
pub fn compare(previous: &[u8], current: &[u8], threshold: f64) -> Result<Change, String> {
    let before = decode(previous, "the previous capture")?;
    let after = decode(current, "this capture")?;
    if before.dimensions() != after.dimensions() {
        // A page that grew or shrank changed; there is no pixel-for-pixel picture of it.
        return Ok(Change { score: 1.0, changed: true, image: None });
    }
    let (width, height) = after.dimensions();
    let max_delta = 35215.0 * PIXEL_THRESHOLD * PIXEL_THRESHOLD;
    let mut picture = RgbaImage::new(width, height);
    let mut differing: u64 = 0;
    for y in 0..height {
        for x in 0..width {
            let (a, b) = (*before.get_pixel(x, y), *after.get_pixel(x, y));
            let out = if a == b {
                faded(b)
            } else if color_delta(a, b).abs() <= max_delta {
                faded(b)
            } else if antialiased(&before, x, y, &after) || antialiased(&after, x, y, &before) {
                ANTIALIASED
            } else {
                differing += 1;
                CHANGED
            };
            picture.put_pixel(x, y, out);
        }
    }
    let score = differing as f64 / (u64::from(width) * u64::from(height)).max(1) as f64;
    let mut png = Vec::new();
    picture.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| format!("diff image: {e}"))?;
    Ok(Change { score, changed: score > threshold, image: Some(png) })
}

fn decode(bytes: &[u8], what: &str) -> Result<RgbaImage, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    let (width, height) = reader.into_dimensions().map_err(|e| format!("cannot read {what}: {e}"))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!("{what} is {width} x {height} pixels, more than change detection compares"));
    }
    Ok(image::load_from_memory(bytes).map_err(|e| format!("cannot decode {what}: {e}"))?.to_rgba8())
}

/// A colour over white, by its alpha (what a viewer sees of a transparent pixel).
fn blend(p: Rgba<u8>) -> (f64, f64, f64) {
    let a = f64::from(p[3]) / 255.0;
    let over = |c: u8| 255.0 + (f64::from(c) - 255.0) * a;
    (over(p[0]), over(p[1]), over(p[2]))
}

fn brightness((r, g, b): (f64, f64, f64)) -> f64 {
    r * 0.298_895_31 + g * 0.586_622_47 + b * 0.114_482_23
}

/// The squared YIQ distance of two colours, negative when the second is the brighter.
fn color_delta(a: Rgba<u8>, b: Rgba<u8>) -> f64 {
    let (c1, c2) = (blend(a), blend(b));
    let y = brightness(c1) - brightness(c2);
    let i = (c1.0 * 0.595_977_99 - c1.1 * 0.274_176_10 - c1.2 * 0.321_801_89)
        - (c2.0 * 0.595_977_99 - c2.1 * 0.274_176_10 - c2.2 * 0.321_801_89);
    let q = (c1.0 * 0.211_470_17 - c1.1 * 0.522_617_11 + c1.2 * 0.311_146_94)
        - (c2.0 * 0.211_470_17 - c2.1 * 0.522_617_11 + c2.2 * 0.311_146_94);
    let delta = 0.5053 * y * y + 0.299 * i * i + 0.1957 * q * q;
    if y > 0.0 {
        -delta
    } else {
        delta
    }
}

fn brightness_delta(a: Rgba<u8>, b: Rgba<u8>) -> f64 {
    brightness(blend(a)) - brightness(blend(b))
}

/// The 3 x 3 neighbourhood of (x, y), clipped to the image, without (x, y) itself; and whether
/// (x, y) is on the image's edge.
fn neighbours(img: &RgbaImage, x: u32, y: u32) -> (impl Iterator<Item = (u32, u32)>, bool) {
    let (w, h) = img.dimensions();
    let (x0, y0, x1, y1) = (x.saturating_sub(1), y.saturating_sub(1), (x + 1).min(w - 1), (y + 1).min(h - 1));
    let edge = x == x0 || x == x1 || y == y0 || y == y1;
    let cells = (y0..=y1).flat_map(move |ny| (x0..=x1).map(move |nx| (nx, ny))).filter(move |&c| c != (x, y));
    (cells, edge)
}

/// Whether (x, y) of `img` is likely an anti-aliased pixel: it lies between a darker and a
/// brighter neighbour, one of which sits in a flat area of both images (a glyph's or a shape's
/// edge, drawn a little differently), and it has at most two neighbours of its own colour.
fn antialiased(img: &RgbaImage, x: u32, y: u32, other: &RgbaImage) -> bool {
    let centre = *img.get_pixel(x, y);
    let (cells, edge) = neighbours(img, x, y);
    let mut same = u32::from(edge);
    let (mut darkest, mut brightest) = (0.0f64, 0.0f64);
    let (mut dark_at, mut bright_at) = ((x, y), (x, y));
    for (nx, ny) in cells {
        let delta = brightness_delta(centre, *img.get_pixel(nx, ny));
        if delta == 0.0 {
            same += 1;
            if same > 2 {
                return false;
            }
        } else if delta < darkest {
            darkest = delta;
            dark_at = (nx, ny);
        } else if delta > brightest {
            brightest = delta;
            bright_at = (nx, ny);
        }
    }
    if darkest == 0.0 || brightest == 0.0 {
        return false;
    }
    let flat = |(px, py): (u32, u32)| many_siblings(img, px, py) && many_siblings(other, px, py);
    flat(dark_at) || flat(bright_at)
}

/// Whether (x, y) has more than two neighbours of exactly its colour.
fn many_siblings(img: &RgbaImage, x: u32, y: u32) -> bool {
    let centre = *img.get_pixel(x, y);
    let (cells, edge) = neighbours(img, x, y);
    let mut same = u32::from(edge);
    for (nx, ny) in cells {
        if *img.get_pixel(nx, ny) == centre {
            same += 1;
            if same > 2 {
                return true;
            }
        }
    }
    false
}

fn faded(p: Rgba<u8>) -> Rgba<u8> {
    let a = f64::from(p[3]) / 255.0;
    let grey = (255.0 + (brightness(blend(p)) - 255.0) * FADE * a).round().clamp(0.0, 255.0) as u8;
    Rgba([grey, grey, grey, 255])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    /// A white page with a black box at (x, y), w x h; its left and right edges grey when
    /// `soft`, as anti-aliasing draws a glyph's stems.
    fn page(x: u32, y: u32, w: u32, h: u32, soft: bool) -> RgbaImage {
        let mut img = RgbaImage::from_pixel(100, 60, Rgba([255, 255, 255, 255]));
        for py in y..y + h {
            for px in x..x + w {
                let edge = px == x || px == x + w - 1;
                let v = if soft && edge { 128 } else { 0 };
                img.put_pixel(px, py, Rgba([v, v, v, 255]));
            }
        }
        img
    }

    #[test]
    fn the_same_capture_has_not_changed() {
        let img = png(&page(10, 10, 30, 20, false));
        let c = compare(&img, &img, 0.01).unwrap();
        assert_eq!((c.score, c.changed), (0.0, false));
        assert!(c.image.is_some());
    }

    #[test]
    fn anti_aliasing_alone_is_not_a_change() {
        let c = compare(&png(&page(10, 10, 30, 20, false)), &png(&page(10, 10, 30, 20, true)), 0.0).unwrap();
        assert_eq!(c.score, 0.0, "only edge pixels between dark and light, beside flat areas, differ");
        assert!(!c.changed);
    }

    #[test]
    fn a_moved_box_is_the_fraction_of_pixels_it_changed() {
        let c = compare(&png(&page(10, 10, 30, 20, false)), &png(&page(50, 30, 30, 20, false)), 0.01).unwrap();
        assert!(c.changed);
        // Two 30 x 20 boxes that do not overlap: 1200 of 6000 pixels.
        assert!((c.score - 0.2).abs() < 0.01, "{}", c.score);
        let picture = image::load_from_memory(&c.image.unwrap()).unwrap().to_rgba8();
        assert_eq!(*picture.get_pixel(20, 15), CHANGED);
        assert_eq!(*picture.get_pixel(0, 0), Rgba([255, 255, 255, 255]));
        let small = compare(&png(&page(10, 10, 30, 20, false)), &png(&page(10, 10, 30, 21, false)), 0.01).unwrap();
        assert!(small.score > 0.0 && !small.changed, "one row of 30 pixels is under 1%: {}", small.score);
    }

    #[test]
    fn other_sizes_are_a_change_and_what_is_no_image_an_error() {
        let other = RgbaImage::from_pixel(100, 61, Rgba([255, 255, 255, 255]));
        let c = compare(&png(&page(10, 10, 30, 20, false)), &png(&other), 0.5).unwrap();
        assert_eq!((c.score, c.changed, c.image), (1.0, true, None));
        assert!(compare(b"not an image", &png(&other), 0.01).is_err());
    }
}
