// SPDX-License-Identifier: MPL-2.0

//! Wall-clock capture times carried on buffers as reference timestamp metas
//! (`timestamp/x-unix`, or `timestamp/x-ntp` as rtspsrc adds them).
//! kafkasrc attaches the record timestamp this way; kafkasink and
//! mjpeghttpsink read it, so capture time survives the whole chain.

use std::sync::LazyLock;
use std::time::Duration;

/// Seconds between 1900 (NTP epoch) and 1970 (Unix epoch).
const NTP_UNIX_OFFSET: Duration = Duration::from_secs(2_208_988_800);

static UNIX_REFERENCE: LazyLock<gst::Caps> =
    LazyLock::new(|| gst::Caps::builder("timestamp/x-unix").build());

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The capture time of `buffer` since the Unix epoch, if a reference
/// timestamp meta gives one.
pub fn capture_time(buffer: &gst::BufferRef) -> Option<Duration> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find_map(|meta| {
            let since_epoch = Duration::from_nanos(meta.timestamp().nseconds());
            match meta.reference().structure(0)?.name().as_str() {
                "timestamp/x-unix" => Some(since_epoch),
                "timestamp/x-ntp" => since_epoch.checked_sub(NTP_UNIX_OFFSET),
                _ => None,
            }
        })
}

/// Records `since_epoch` as the capture time of `buffer`.
pub fn set_capture_time(buffer: &mut gst::BufferRef, since_epoch: Duration) {
    gst::ReferenceTimestampMeta::add(
        buffer,
        &UNIX_REFERENCE,
        gst::ClockTime::from_nseconds(since_epoch.as_nanos() as u64),
        gst::ClockTime::NONE,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_and_ntp_references() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        assert_eq!(capture_time(&buffer), None);
        set_capture_time(
            buffer.get_mut().unwrap(),
            Duration::from_millis(1_795_611_398_227),
        );
        assert_eq!(
            capture_time(&buffer),
            Some(Duration::from_millis(1_795_611_398_227))
        );

        let mut ntp = gst::Buffer::new();
        gst::ReferenceTimestampMeta::add(
            ntp.get_mut().unwrap(),
            &gst::Caps::builder("timestamp/x-ntp").build(),
            gst::ClockTime::from_seconds(2_208_988_800 + 10),
            gst::ClockTime::NONE,
        );
        assert_eq!(capture_time(&ntp), Some(Duration::from_secs(10)));
    }
}
