/* gguf_internal.h - internal to src/io: what the GGUF/sqzf reader (gguf_read.c) and writer
 * (gguf_write.c) share: header constants and the byte size of a tensor in a file, from the
 * type's traits row (formats/types.c). */
#ifndef SQZ_IO_GGUF_INTERNAL_H
#define SQZ_IO_GGUF_INTERNAL_H

#include <stdint.h>

#include "io/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader and writer assume a little-endian host (GGUF files are little-endian)"
#endif

#define GGUF_HEADER_SIZE 24 /* magic, version, tensor count, metadata count */
#define GGUF_KEY_ALIGNMENT "general.alignment"

/* The layout of a tensor type id in a file (formats/types.c's rows): ggml's ids in both
 * formats; sqz's own ids (>= 1024, rows with a block layout) only in sqzf files. */
static inline int gguf_file_type_layout(int sqzf, int type, int *block_size, size_t *type_size) {
    if (!sqz_type_has_layout(type) || (!sqzf && type >= SQZ_TYPE_SQZ_FIRST)) return 0;
    const sqz_type_traits *tr = sqz_type_get(type);
    if (block_size) *block_size = tr->block_size;
    if (type_size) *type_size = tr->type_size;
    return 1;
}

/* Bytes of a tensor of count elements (count a multiple of the block size); 0 on overflow. */
static inline int gguf_file_nbytes(int sqzf, int type, uint64_t count, uint64_t *out) {
    int bs;
    size_t ts;
    if (!gguf_file_type_layout(sqzf, type, &bs, &ts)) return 0;
    uint64_t blocks = count / (uint64_t)bs;
    if (blocks > UINT64_MAX / ts || blocks * ts > SIZE_MAX) return 0;
    *out = blocks * ts;
    return 1;
}

static inline uint64_t gguf_align(uint64_t x, uint32_t a) { return (x + a - 1) / a * a; }

#endif
