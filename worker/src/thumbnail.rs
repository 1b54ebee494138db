//! The dashboard's picture of a completed job: the top of its first image output, scaled to at
//! most 400×300 and encoded as a JPEG of a few kilobytes. Made once, by the worker that rendered
//! the job, and stored beside the job (pgshot.thumbnails), never as one of its outputs.

use image::ImageEncoder;
use pgshot_db::worker_queue::{OutputRow, Thumbnail};

const WIDTH: u32 = 400;
const HEIGHT: u32 = 300;
const QUALITY: u8 = 72;

/// The output a job's thumbnail is made of: its first image.
pub fn first_image(outputs: &[OutputRow]) -> Option<&OutputRow> {
    outputs.iter().find(|o| o.content_type.starts_with("image/"))
}

/// The thumbnail of an image output (`None` for an empty image), or why there is none.
/// CPU-bound: call it off the async runtime's threads.
pub fn of(output: &OutputRow) -> Result<Option<Thumbnail>, String> {
    let image =
        image::load_from_memory(&output.bytes).map_err(|e| format!("cannot decode {}: {e}", output.output_id))?;
    let (width, height) = (image.width(), image.height());
    if width == 0 || height == 0 {
        return Ok(None);
    }
    // A full page is much taller than wide: keep its top, in the thumbnail's proportions.
    let visible = height.min(width * HEIGHT / WIDTH).max(1);
    let top = image.crop_imm(0, 0, width, visible);
    // Scaled down only: a small screenshot is its own thumbnail.
    let small = if width <= WIDTH && visible <= HEIGHT { top } else { top.thumbnail(WIDTH, HEIGHT) }.into_rgb8();
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, QUALITY)
        .write_image(small.as_raw(), small.width(), small.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    Ok(Some(Thumbnail {
        content_type: "image/jpeg".into(),
        width: small.width() as i32,
        height: small.height() as i32,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(image.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn output(id: &str, content_type: &str, bytes: Vec<u8>) -> OutputRow {
        OutputRow {
            output_id: id.into(),
            output_type: "screenshot".into(),
            content_type: content_type.into(),
            bytes,
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn a_viewport_shot_is_scaled_to_fit_and_is_a_jpeg() {
        let thumb = of(&output("main", "image/png", png(1280, 720))).unwrap().unwrap();
        assert_eq!((thumb.width, thumb.height), (400, 225));
        assert_eq!(&thumb.bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
        let decoded = image::load_from_memory(&thumb.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (400, 225));
        assert!(thumb.bytes.len() < 40_000, "{} bytes", thumb.bytes.len());
    }

    #[test]
    fn a_full_page_keeps_its_top_in_four_by_three() {
        let thumb = of(&output("main", "image/png", png(800, 9000))).unwrap().unwrap();
        assert_eq!((thumb.width, thumb.height), (400, 300));
    }

    #[test]
    fn the_first_image_is_used_and_documents_have_none() {
        let pdf = output("doc", "application/pdf", b"%PDF-1.7".to_vec());
        assert!(first_image(std::slice::from_ref(&pdf)).is_none());
        let outputs = [pdf, output("shot", "image/png", png(300, 200)), output("late", "image/png", png(10, 10))];
        let image = first_image(&outputs).unwrap();
        assert_eq!(image.output_id, "shot");
        let thumb = of(image).unwrap().unwrap();
        assert_eq!((thumb.width, thumb.height), (300, 200), "never scaled up");
    }

    #[test]
    fn bytes_that_are_not_an_image_are_an_error_not_a_panic() {
        let error = of(&output("main", "image/png", b"not a png".to_vec())).unwrap_err();
        assert!(error.contains("main"), "{error}");
    }
}
