/* safetensors.h - memory-mapped safetensors files, single or sharded.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data section; offsets are relative to its start. Everything is validated on open:
 * sizes, offsets inside the file, no overlaps, byte counts = product(shape) * dtype size,
 * no overflow. Nothing is copied: tensor data points into the mapping.
 */
#ifndef SQZ_IO_SAFETENSORS_H
#define SQZ_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"

#define SQZ_ST_MAX_DIMS 4

typedef struct sqz_st_tensor {
    const char *name;
    sqz_type type;       /* F32, F16 or BF16; other known dtypes (I64, F64, F8_E4M3, ...) are
                            accepted on open with type SQZ_ST_TYPE_NONE and refused with
                            SQZ_ERR_UNSUPPORTED by sqz_st_require, not on open */
    const char *dtype;   /* as in the file ("F16", "I64", ...) */
    int n_dims;
    int64_t shape[SQZ_ST_MAX_DIMS]; /* as in the file: shape[0] is the slowest dimension;
                                       entries from n_dims on are 1 */
    const void *data;
    size_t nbytes;
    const char *file;    /* path of the shard holding it */
} sqz_st_tensor;

/* The type of a tensor whose dtype sqz cannot compute with. The tensor stays in the table (its
 * sizes are validated) so that a loader can say which tensor has which dtype. */
#define SQZ_ST_TYPE_NONE ((sqz_type)-1)
/* For the writer: raw bytes, dtype "U8" (bit-packed masks). The reader lists a U8 tensor with
 * type SQZ_ST_TYPE_NONE and dtype "U8"; its bytes are there to read. */
#define SQZ_ST_TYPE_U8 ((sqz_type)-2)

typedef struct sqz_safetensors sqz_safetensors;

/* path: a .safetensors file, a model.safetensors.index.json, or a folder holding either. */
sqz_status sqz_st_open(sqz_ctx *ctx, const char *path, sqz_safetensors **out);
/* Parses a whole file image from memory (for the fuzzer and tests); data points into buf,
 * which must outlive the result. */
sqz_status sqz_st_open_mem(sqz_ctx *ctx, const void *buf, size_t len, const char *name,
                           sqz_safetensors **out);
void sqz_st_close(sqz_safetensors *st);

/* Gives back the pages of [p, p + n) that lie in st's mapped shards (sqz_file_release): a
 * reader done with a tensor's bytes drops them from the resident set; read again, they load
 * from the file. Memory st does not map (sqz_st_open_mem's buffer, anything else) is not
 * touched. Returns the bytes given back. st may be NULL. */
size_t sqz_st_release(const sqz_safetensors *st, const void *p, size_t n);

size_t sqz_st_count(const sqz_safetensors *st);
const sqz_st_tensor *sqz_st_get(const sqz_safetensors *st, size_t i);
/* NULL if absent. Tensors are ordered by name (sqz_st_get too); lookups are binary searches.
 * Tensor data may be unaligned (the format does not require alignment): read it with memcpy
 * or convert it, do not cast it to float* / uint16_t*. */
const sqz_st_tensor *sqz_st_find(const sqz_safetensors *st, const char *name);
/* Like sqz_st_find, with errors: SQZ_ERR_FORMAT "PATH: no tensor NAME" when absent,
 * SQZ_ERR_UNSUPPORTED "FILE: tensor NAME has dtype I64, not supported" when its type is
 * SQZ_ST_TYPE_NONE. (Added with the implementation.) */
sqz_status sqz_st_require(sqz_ctx *ctx, const sqz_safetensors *st, const char *name,
                          const sqz_st_tensor **out);

/* ------------------------------------------------------------------ writer
 *
 * Streams a single safetensors file: every tensor is declared first (name, dtype F32 / F16 /
 * BF16, shape), which fixes the header; then begin writes the header to
 * path + ".tmp.XXXXXX" beside path, put / put_f32 append the tensors' data in the order
 * declared (split anyhow: a put may end inside a tensor or span several), and finish checks
 * that every tensor got all its bytes, fsyncs and renames over path. The header lists the
 * tensors in the order declared with consecutive data_offsets, "__metadata__" {"format": "pt"}
 * first, padded with spaces to a multiple of 8 bytes (as the reference writer does). Any
 * failure (SQZ_ERR_IO naming path; SQZ_ERR_ARG for a bad declaration, a put past the last
 * tensor, or too few bytes at finish) removes the temporary file: path is untouched and
 * nothing is left behind. sqz_st_writer_free during a stream removes it too. */
typedef struct sqz_st_writer sqz_st_writer;

/* Errors of every later call are reported on ctx, which must outlive the writer. */
sqz_status sqz_st_writer_new(sqz_ctx *ctx, sqz_st_writer **out);
void sqz_st_writer_free(sqz_st_writer *w); /* accepts NULL */
/* A tensor: name non-empty and unique, type SQZ_TYPE_F32, F16, BF16 or SQZ_ST_TYPE_U8, 0..4 dims (shape[0]
 * slowest, as the file stores it), each >= 0. *nbytes (when not NULL): its data's bytes. */
sqz_status sqz_st_writer_declare(sqz_st_writer *w, const char *name, sqz_type type, int n_dims,
                                 const int64_t *shape, size_t *nbytes);
sqz_status sqz_st_writer_begin(sqz_st_writer *w, const char *path);
/* The next n bytes of tensor data, in each tensor's own dtype (little-endian). */
sqz_status sqz_st_writer_put(sqz_st_writer *w, const void *data, size_t n);
/* The next n elements as floats, each rounded (to nearest even) to the dtype of the tensor it
 * lands in; may span tensors. Must start on an element boundary; not into a U8 tensor. */
sqz_status sqz_st_writer_put_f32(sqz_st_writer *w, const float *x, size_t n);
sqz_status sqz_st_writer_finish(sqz_st_writer *w);

#endif
