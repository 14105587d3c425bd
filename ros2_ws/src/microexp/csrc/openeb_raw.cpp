// microexp_openeb_raw: the sensor's raw bytes from an OpenEB 5.x I_EventsStream, for Python.
//
// OpenEB's own Python bindings return the stream's buffers as a RawBuffer that exposes only size(). This module
// takes the I_EventsStream object those bindings give (get_i_events_stream()) and hands out the bytes of the
// buffers it holds, with the GIL released while it waits: read() copies them into one Python bytes object;
// read_views() copies nothing and returns one read-only memoryview per buffer, each keeping its OpenEB buffer
// alive (the stream's pool reuses a buffer once its view is gone). It must be built with the same pybind11
// version and compiler as OpenEB's bindings, so that both share pybind11's type registry
// (scripts/openeb_raw.sh does this).

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "metavision/hal/facilities/i_events_stream.h"

namespace py = pybind11;

namespace {

struct ReadResult {
    std::vector<Metavision::DataTransfer::BufferPtr> buffers;
    std::size_t bytes = 0;
    bool ended        = false;
};

// Collects buffers: waits up to timeout_s for the first one, then takes those already there until max_bytes is
// reached (a buffer is never split). ended is set when the stream says no buffer will come again.
ReadResult collect(Metavision::I_EventsStream &stream, double timeout_s, std::size_t max_bytes) {
    ReadResult r;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (r.bytes < max_bytes) {
        const short state = stream.poll_buffer();
        if (state < 0) {
            r.ended = true;
            break;
        }
        if (state > 0) {
            auto buffer = stream.get_latest_raw_data();
            if (buffer && buffer.size() > 0) {
                r.bytes += buffer.size() * sizeof(*buffer.data());
                r.buffers.push_back(std::move(buffer));
            }
            continue;
        }
        if (!r.buffers.empty() || std::chrono::steady_clock::now() >= deadline) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return r;
}

// read(stream, timeout_s, max_bytes) -> (bytes, buffers) | None
py::object read_buffers(py::object stream_object, double timeout_s, std::size_t max_bytes) {
    auto &stream = stream_object.cast<Metavision::I_EventsStream &>();
    ReadResult r;
    {
        py::gil_scoped_release release;
        r = collect(stream, timeout_s, max_bytes);
    }
    if (r.ended && r.buffers.empty()) {
        return py::none();
    }
    PyObject *out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(r.bytes));
    if (out == nullptr) {
        throw py::error_already_set();
    }
    char *dst = PyBytes_AS_STRING(out);
    {
        py::gil_scoped_release release;
        for (const auto &buffer : r.buffers) {
            const std::size_t n = buffer.size() * sizeof(*buffer.data());
            std::memcpy(dst, buffer.data(), n);
            dst += n;
        }
    }
    return py::make_tuple(py::reinterpret_steal<py::bytes>(out), r.buffers.size());
}

// One OpenEB buffer as a Python object with the buffer protocol (read-only bytes): numpy.frombuffer or
// memoryview on it keep it, and so the buffer, alive.
struct HeldBuffer {
    Metavision::DataTransfer::BufferPtr buffer;
};

// read_views(stream, timeout_s, max_bytes) -> ([HeldBuffer, ...], bytes) | None
py::object read_buffer_views(py::object stream_object, double timeout_s, std::size_t max_bytes) {
    auto &stream = stream_object.cast<Metavision::I_EventsStream &>();
    ReadResult r;
    {
        py::gil_scoped_release release;
        r = collect(stream, timeout_s, max_bytes);
    }
    if (r.ended && r.buffers.empty()) {
        return py::none();
    }
    py::list held;
    for (auto &buffer : r.buffers) {
        held.append(py::cast(HeldBuffer{std::move(buffer)}));
    }
    return py::make_tuple(held, r.bytes);
}

} // namespace

PYBIND11_MODULE(microexp_openeb_raw, m) {
    m.doc() = "The raw bytes of an OpenEB I_EventsStream (see read()).";
    m.def("read", &read_buffers, py::arg("stream"), py::arg("timeout_s") = 0.05, py::arg("max_bytes") = 4u << 20,
          "Bytes of the buffers the stream holds: waits up to timeout_s for the first, then takes those already "
          "there up to max_bytes. Returns (bytes, number of buffers); (b'', 0) when none came in time; None when "
          "the stream ended.");
    py::class_<HeldBuffer>(m, "HeldBuffer", py::buffer_protocol(),
                           "One OpenEB buffer (read-only bytes through the buffer protocol), kept alive while in use.")
        .def_buffer([](HeldBuffer &h) -> py::buffer_info {
            const auto n = static_cast<py::ssize_t>(h.buffer.size() * sizeof(*h.buffer.data()));
            return py::buffer_info(const_cast<void *>(static_cast<const void *>(h.buffer.data())), 1,
                                   py::format_descriptor<std::uint8_t>::format(), 1, {n}, {1}, true);
        })
        .def("__len__", [](const HeldBuffer &h) { return h.buffer.size() * sizeof(*h.buffer.data()); });
    m.def("read_views", &read_buffer_views, py::arg("stream"), py::arg("timeout_s") = 0.05,
          py::arg("max_bytes") = 4u << 20,
          "As read(), without copying: ([HeldBuffer, ...], bytes), one per buffer, each exposing its bytes "
          "(read-only) through the buffer protocol; ([], 0) when none came in time; None when the stream ended.");
}
