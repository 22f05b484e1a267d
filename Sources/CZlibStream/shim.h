#ifndef PIPELINE_CZLIBSTREAM_SHIM_H
#define PIPELINE_CZLIBSTREAM_SHIM_H
#include <zlib.h>

// inflateInit2 is a macro (it passes ZLIB_VERSION and the struct size); Swift gets one typed wrapper per format.

// gzip only (16 + MAX_WBITS): the header and the CRC-32/ISIZE trailer are checked by zlib.
static inline int pipeline_zlib_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 16 + MAX_WBITS);
}

// Raw deflate (-MAX_WBITS), as zip members hold it: no header, no trailer.
static inline int pipeline_zlib_inflate_init_raw(z_stream *stream) {
    return inflateInit2(stream, -MAX_WBITS);
}
#endif
