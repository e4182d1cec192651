// SPDX-License-Identifier: MPL-2.0

//! Hands records to librdkafka without copying their values.
//!
//! rust-rdkafka's `send` copies every value into librdkafka
//! (`RD_KAFKA_MSG_F_COPY`): an allocation and a copy of the whole frame on
//! the streaming thread. Here the mapped frame travels with each of its
//! records as the delivery opaque ([`InFlight`]) and is released once the
//! last of its records' delivery reports has been handled. librdkafka
//! writes values over `message.copy.max.bytes` (65,535 bytes by default) to the
//! socket from the frame itself, and copies smaller ones into the request.
//!
//! Records librdkafka still holds when its producer is destroyed (after
//! rust-rdkafka's purge and 500 ms flush) get no delivery report: their
//! frames are not released.

use std::ffi::{CStr, c_int, c_void};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::IntoOpaque;
use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_vtype_t::*;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
use rdkafka::producer::{Producer, ThreadedProducer};

use super::delivery::SinkContext;

/// librdkafka's `RD_KAFKA_PARTITION_UA` (a C macro): the partitioner
/// chooses.
const PARTITION_UNASSIGNED: i32 = -1;

/// A frame, mapped for as long as librdkafka may read one of its records.
pub type Frame = Arc<gst::MappedBuffer<gst::buffer::Readable>>;

/// The delivery opaque of a record: when it was handed over, and the frame
/// its value is read from.
pub struct InFlight {
    /// Microseconds since the delivery epoch when the record was handed over.
    pub sent_at_us: usize,
    _frame: Frame,
}

/// `buffer`, mapped for librdkafka to read until its delivery reports: the
/// buffer itself, or a copy when it belongs to a buffer pool (a camera's
/// capture buffers, a decoder's frames). Holding a pooled buffer for a
/// whole delivery (minutes while the brokers are away) would starve the
/// pool and stall the element that fills it. The error says what failed.
pub fn frame(buffer: &gst::Buffer) -> Result<Frame, &'static str> {
    // SAFETY: reads the `pool` field of a buffer a reference is held to;
    // GstBuffer sets it when the buffer is acquired from a pool.
    let pooled = unsafe { !(*buffer.as_ptr()).pool.is_null() };
    let owned = if pooled {
        buffer
            .copy_deep()
            .map_err(|_| "cannot copy a buffer of a buffer pool")?
    } else {
        buffer.clone()
    };
    owned
        .into_mapped_buffer_readable()
        .map(Arc::new)
        .map_err(|_| "cannot map buffer")
}

/// A record whose value is `frame[range]`.
pub struct Record<'a> {
    pub topic: &'a CStr,
    /// `None`: the producer's partitioner chooses.
    pub partition: Option<i32>,
    pub key: &'a [u8],
    pub frame: &'a Frame,
    pub range: Range<usize>,
    pub timestamp_ms: i64,
    /// Taken by librdkafka once the record is accepted.
    pub headers: Option<OwnedHeaders>,
}

/// Hands `record` to librdkafka, dated `sent_at_us`. On an error (a full
/// queue, say) librdkafka took nothing and `record` can be sent again.
pub fn send(
    producer: &ThreadedProducer<SinkContext>,
    record: &mut Record<'_>,
    sent_at_us: usize,
) -> KafkaResult<()> {
    let value = &record.frame.as_slice()[record.range.clone()];
    let opaque = Box::new(InFlight {
        sent_at_us,
        _frame: record.frame.clone(),
    })
    .into_ptr();
    // rust-rdkafka's BorrowedHeaders is librdkafka's header list itself,
    // seen through a reference (it converts the pointer the same way; the
    // exact rdkafka version in Cargo.toml keeps it so).
    let headers = record.headers.as_ref().map_or(std::ptr::null_mut(), |h| {
        h.as_borrowed() as *const BorrowedHeaders as *mut rdsys::rd_kafka_headers_t
    });
    // SAFETY: every pointer is valid for the call; without a copy or free
    // flag librdkafka reads the value in place until the delivery report,
    // and the frame it points into is kept alive by the opaque, which the
    // delivery callback (or this function, on an error) takes back. On
    // success librdkafka owns the header list.
    let error = unsafe {
        rdsys::rd_kafka_producev(
            producer.client().native_ptr(),
            RD_KAFKA_VTYPE_TOPIC,
            record.topic.as_ptr(),
            RD_KAFKA_VTYPE_PARTITION,
            record.partition.unwrap_or(PARTITION_UNASSIGNED),
            RD_KAFKA_VTYPE_MSGFLAGS,
            0 as c_int,
            RD_KAFKA_VTYPE_VALUE,
            value.as_ptr() as *mut c_void,
            value.len(),
            RD_KAFKA_VTYPE_KEY,
            record.key.as_ptr() as *const c_void,
            record.key.len(),
            RD_KAFKA_VTYPE_OPAQUE,
            opaque,
            RD_KAFKA_VTYPE_TIMESTAMP,
            record.timestamp_ms,
            RD_KAFKA_VTYPE_HEADERS,
            headers,
            RD_KAFKA_VTYPE_END,
        )
    };
    if error != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: librdkafka refused the record and kept no pointer to it.
        drop(unsafe { Box::<InFlight>::from_ptr(opaque) });
        return Err(KafkaError::MessageProduction(error.into()));
    }
    std::mem::forget(record.headers.take());
    Ok(())
}

/// Sends whatever records `producer` holds without waiting out their
/// linger, and waits up to `timeout` for their acknowledgements: librdkafka
/// treats the linger as over while a flush lasts. For EOS, where no record
/// will join the last batch.
pub fn hurry(producer: &ThreadedProducer<SinkContext>, timeout: Duration) {
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: the handle is valid while `producer` lives. rust-rdkafka takes
    // delivery reports as events, so rd_kafka_flush only waits for the
    // count of records held to reach zero and runs no callback here. Its
    // result (records still held) is the caller's to wait for.
    unsafe { rdsys::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
}

#[cfg(test)]
mod tests {
    use gst::prelude::*;

    use super::*;

    fn pool_of_one(size: usize) -> gst::BufferPool {
        let pool = gst::BufferPool::new();
        let mut config = pool.config();
        config.set_params(None, size as u32, 1, 1);
        pool.set_config(config).unwrap();
        pool.set_active(true).unwrap();
        pool
    }

    #[test]
    fn a_frame_is_the_buffer_itself_unless_it_belongs_to_a_pool() {
        gst::init().unwrap();
        let own = gst::Buffer::from_slice(vec![7u8; 1000]);
        let at = own.map_readable().unwrap().as_ptr();
        assert_eq!(frame(&own).unwrap().as_ptr(), at);

        let pool = pool_of_one(1000);
        let mut pooled = pool.acquire_buffer(None).unwrap();
        pooled
            .get_mut()
            .unwrap()
            .copy_from_slice(0, &[9u8; 1000])
            .unwrap();
        let copy = frame(&pooled).unwrap();
        let pooled_map = pooled.map_readable().unwrap();
        assert_ne!(copy.as_ptr(), pooled_map.as_ptr());
        assert_eq!(copy.as_slice(), pooled_map.as_slice());
    }
}
