/* gguf.h - GGUF files (llama.cpp / ggml): a memory-mapped reader and an atomic writer.
 *
 * Format (ggml docs/gguf.md), all little-endian:
 *   "GGUF", u32 version (2 or 3; v1 used u32 lengths and is refused), u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 value_type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
 *   zero padding to general.alignment (u32, default 32), then the data section; each tensor's
 *   offset is relative to the data section and a multiple of the alignment.
 *   A string is u64 length + bytes (no NUL). An array value is u32 element type, u64 count,
 *   then the elements (strings and nested arrays included).
 *
 * Reader: everything is validated on open, before anything is returned: magic and version,
 * every read bounds-checked (truncation anywhere is an error), string lengths and element
 * counts bounded by the bytes left in the file (so nothing allocates more than the file can
 * describe), value types known, bools 0 or 1, keys non-empty (no NUL bytes, <= 65535 bytes) and
 * unique, general.alignment a u32 power of two <= 1 MiB, tensor names 1..64 bytes, unique and
 * without NUL bytes, 1 <= n_dims <= 4, every ne[i] >= 1, element and byte counts without
 * overflow, a type id that ggml defines (all 0..39 but the removed ones), ne[0] a multiple of
 * the type's block size, data offsets aligned, data ranges inside the file and not overlapping.
 * Holes between tensors are allowed (llama.cpp's writer leaves only alignment padding, and
 * llama.cpp's reader insists on it; sqz does not need to). Errors are one line naming the file:
 * SQZ_ERR_FORMAT for a corrupt or truncated file, SQZ_ERR_UNSUPPORTED for a version sqz does
 * not read.
 *
 * sqzf (sqz's own container, docs/sqzf.md): magic "SQZF", u32 version 1, then GGUF v3's layout
 * byte for byte; the same reader validates it with the same checks, and a tensor may also have
 * one of sqz's own type ids (>= 1024, sqz_type_get rows with a block layout). A GGUF file with
 * such an id is refused exactly as before ("unknown type id").
 *
 * Tensor types: every ggml type id (0..SQZ_TYPE_COUNT-1) has a name and (unless removed from
 * ggml) a block layout in formats/types.c's traits rows (sqz_type_get), so a file holding
 * types sqz cannot compute with (iq2_xxs, ...) still opens and is fully validated; sqz_gguf_require_tensor refuses such a tensor with
 * SQZ_ERR_UNSUPPORTED ("tensor X has type iq2_xxs, not supported by sqz") when a loader asks
 * for it. Nothing is copied: tensor data and metadata values point into the mapping. Multi-byte
 * values there may be unaligned (metadata arrays always can be): read them with memcpy.
 * The host must be little-endian (checked at compile time).
 *
 * Writer: collects metadata (copied at once) and tensors (pointers, read at write time; or
 * declared without data and streamed: sqz_gguf_writer_begin / put / finish), then writes
 * version 3 exactly as ggml's gguf writer does (KVs and tensors in the order added,
 * n_dims as given, offsets packed in order, zero padding to the alignment after the tensor
 * infos and after every tensor including the last), to a temporary file beside the target
 * that is fsynced and renamed over it only when complete: on any failure nothing is left
 * behind and an existing file at the path is untouched (rewriting the file a sqz_gguf maps is
 * safe: the mapping keeps the old contents). A file read with sqz_gguf_open whose KVs are
 * copied with sqz_gguf_writer_copy_kv and tensors added in file order comes out byte-identical
 * when llama.cpp wrote it (tested on the three files of ../shared/models/gguf). ggml writes
 * n_dims without trailing 1s (a [512, 1] tensor as 1-D); pass n_dims the same way to match it.
 */
#ifndef SQZ_IO_GGUF_H
#define SQZ_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"

#define SQZ_GGUF_MAX_DIMS 4
#define SQZ_GGUF_DEFAULT_ALIGNMENT 32
#define SQZ_GGUF_MAX_ALIGNMENT (1u << 20)
#define SQZ_GGUF_MAX_NAME 64     /* bytes of a tensor name the reader accepts (the spec's limit) */
#define SQZ_GGUF_MAX_KEY 65535   /* bytes of a metadata key */
#define SQZ_SQZF_VERSION 1       /* the sqzf container version this code reads and writes */

/* Metadata value types (gguf_metadata_value_type). */
typedef enum sqz_gguf_type {
    SQZ_GGUF_U8 = 0,
    SQZ_GGUF_I8 = 1,
    SQZ_GGUF_U16 = 2,
    SQZ_GGUF_I16 = 3,
    SQZ_GGUF_U32 = 4,
    SQZ_GGUF_I32 = 5,
    SQZ_GGUF_F32 = 6,
    SQZ_GGUF_BOOL = 7, /* one byte, 0 or 1 */
    SQZ_GGUF_STRING = 8,
    SQZ_GGUF_ARRAY = 9,
    SQZ_GGUF_U64 = 10,
    SQZ_GGUF_I64 = 11,
    SQZ_GGUF_F64 = 12,
    SQZ_GGUF_TYPE_COUNT = 13
} sqz_gguf_type;

/* "u8", "i8", ..., "str", "arr", ...; "?" for an invalid id. */
const char *sqz_gguf_type_name(int type);
/* Bytes of one value of a fixed-size type (1, 2, 4 or 8); 0 for string, array or invalid. */
size_t sqz_gguf_type_size(int type);

/* ------------------------------------------------------------------ reader */

typedef struct sqz_gguf_tensor {
    const char *name;   /* NUL-terminated copy of the file's name */
    int n_dims;         /* 1..4, as in the file */
    int64_t ne[SQZ_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the row length (fastest dimension),
                                      ne[1] the number of rows, ...; entries from n_dims on are 1 */
    int type;           /* ggml type id; sqz_type_usable(type) is 0 for types sqz cannot compute */
    uint64_t offset;    /* as in the file: relative to the data section */
    const void *data;   /* into the mapping (or the caller's buffer for sqz_gguf_open_mem) */
    size_t nbytes;      /* ne[0]*..*ne[3] / block_size * type_size */
    size_t index;       /* position in the file's tensor table (= i of sqz_gguf_get_tensor(g, i)) */
} sqz_gguf_tensor;

typedef struct sqz_gguf sqz_gguf;

sqz_status sqz_gguf_open(sqz_ctx *ctx, const char *path, sqz_gguf **out);
/* Parses a whole file image from memory (for the fuzzer and tests); tensor data and values
 * point into buf, which must outlive the result. name is used in messages ("<memory>" when
 * NULL). */
sqz_status sqz_gguf_open_mem(sqz_ctx *ctx, const void *buf, size_t len, const char *name,
                             sqz_gguf **out);
void sqz_gguf_close(sqz_gguf *g); /* accepts NULL */
/* Gives back the pages of [p, p + n) that lie in g's mapping (sqz_file_release): they leave
 * the resident set and load from the file again when read. A sqz_gguf_open_mem buffer (not a
 * mapping sqz made) is never touched. Returns the bytes given back. g may be NULL. */
size_t sqz_gguf_release(const sqz_gguf *g, const void *p, size_t n);

const char *sqz_gguf_path(const sqz_gguf *g);
uint32_t sqz_gguf_version(const sqz_gguf *g);     /* 2 or 3; sqzf: 1 */
/* 1 if the file is sqz's own container (magic "SQZF", docs/sqzf.md), 0 for GGUF. */
int sqz_gguf_is_sqzf(const sqz_gguf *g);
uint32_t sqz_gguf_alignment(const sqz_gguf *g);   /* general.alignment, or 32 */
uint64_t sqz_gguf_data_offset(const sqz_gguf *g); /* file offset of the data section */
size_t sqz_gguf_file_size(const sqz_gguf *g);

/* ---- metadata, by index (0 .. n_kv-1, file order) */
size_t sqz_gguf_n_kv(const sqz_gguf *g);
/* Index of key, or -1. Binary search over a sorted index. */
int64_t sqz_gguf_find_key(const sqz_gguf *g, const char *key);
const char *sqz_gguf_kv_key(const sqz_gguf *g, size_t i); /* NUL-terminated; NULL if i >= n_kv */
/* The value type (SQZ_GGUF_ARRAY for arrays); -1 if i >= n_kv. */
int sqz_gguf_kv_type(const sqz_gguf *g, size_t i);
/* For arrays: element type and count (returns 1); 0 for a scalar or a bad index. */
int sqz_gguf_kv_arr(const sqz_gguf *g, size_t i, int *elem_type, uint64_t *n,
                    const void **data);
/* Element j of a string array (or j = 0 of a string scalar): bytes (not NUL-terminated) and
 * length; NULL if i is not a string / string array or j is out of range. */
const char *sqz_gguf_kv_str(const sqz_gguf *g, size_t i, uint64_t j, size_t *len);
/* The value as one integer / float, whatever its numeric type: returns 1 when the value is a
 * scalar of an integer type for _int, of an integer or float type for _f64; 0 otherwise. */
int sqz_gguf_kv_int(const sqz_gguf *g, size_t i, int64_t *out); /* u64 > INT64_MAX: 0 */
int sqz_gguf_kv_f64(const sqz_gguf *g, size_t i, double *out);
/* The encoded value as in the file, from the u32 value type to the end of the value (what
 * sqz_gguf_writer_copy_kv copies); the way to walk nested arrays. */
const void *sqz_gguf_kv_raw(const sqz_gguf *g, size_t i, size_t *len);

/* ---- metadata, by key, with errors. Each fails with SQZ_ERR_FORMAT and a message naming the
 * file and the key when the key is absent ("PATH: no metadata key K") or its value does not
 * convert ("PATH: metadata K is a string, not an integer", "... = -3 does not fit in u32");
 * *out is untouched then. For an optional key, test sqz_gguf_find_key first. */
/* Integers: any integer type whose value fits (u8..i64). */
sqz_status sqz_gguf_get_u32(sqz_ctx *ctx, const sqz_gguf *g, const char *key, uint32_t *out);
sqz_status sqz_gguf_get_i32(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int32_t *out);
sqz_status sqz_gguf_get_u64(sqz_ctx *ctx, const sqz_gguf *g, const char *key, uint64_t *out);
sqz_status sqz_gguf_get_i64(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int64_t *out);
/* Floats: f32 or f64 (f64 is rounded to float for _f32). */
sqz_status sqz_gguf_get_f32(sqz_ctx *ctx, const sqz_gguf *g, const char *key, float *out);
sqz_status sqz_gguf_get_f64(sqz_ctx *ctx, const sqz_gguf *g, const char *key, double *out);
sqz_status sqz_gguf_get_bool(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int *out);
/* A string value: pointer into the file (not NUL-terminated) and its length. */
sqz_status sqz_gguf_get_str(sqz_ctx *ctx, const sqz_gguf *g, const char *key, const char **s,
                            size_t *len);
/* An array: element type, count and the first element's bytes in the file. Fixed-size elements
 * are packed little-endian (possibly unaligned: memcpy them); for strings use
 * sqz_gguf_arr_str; for nested arrays sqz_gguf_kv_raw. */
sqz_status sqz_gguf_get_arr(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int *elem_type,
                            uint64_t *n, const void **data);
/* Element i of the string array key (bytes, not NUL-terminated, and length); NULL when key is
 * absent, not an array of strings, or i is out of range. O(1). */
const char *sqz_gguf_arr_str(const sqz_gguf *g, const char *key, uint64_t i, size_t *len);

/* ---- tensors */
size_t sqz_gguf_n_tensors(const sqz_gguf *g);
/* Tensor i in file order (the order of the tensor infos); NULL if out of range. */
const sqz_gguf_tensor *sqz_gguf_get_tensor(const sqz_gguf *g, size_t i);
/* NULL if absent. Binary search over a sorted index. */
const sqz_gguf_tensor *sqz_gguf_find_tensor(const sqz_gguf *g, const char *name);
/* Like sqz_gguf_find_tensor, with errors: SQZ_ERR_FORMAT "PATH: no tensor NAME" when absent,
 * SQZ_ERR_UNSUPPORTED "PATH: tensor NAME has type iq2_xxs, not supported by sqz" when
 * sqz_type_usable(type) is 0. */
sqz_status sqz_gguf_require_tensor(sqz_ctx *ctx, const sqz_gguf *g, const char *name,
                                   const sqz_gguf_tensor **out);

/* ------------------------------------------------------------------ writer */

typedef struct sqz_gguf_writer sqz_gguf_writer;

/* Errors of every later call on the writer are reported on ctx, which must outlive it. */
sqz_status sqz_gguf_writer_new(sqz_ctx *ctx, sqz_gguf_writer **out);
void sqz_gguf_writer_free(sqz_gguf_writer *w); /* accepts NULL */

/* Metadata, written in the order added. A key (non-empty, <= 65535 bytes) may be added once
 * (SQZ_ERR_ARG otherwise). general.alignment must be a u32 power of two <= 1 MiB; it sets the
 * alignment of the data section (32 when absent). Values are copied. A failed call adds
 * nothing and leaves the writer usable. */
sqz_status sqz_gguf_writer_add_u8(sqz_gguf_writer *w, const char *key, uint8_t v);
sqz_status sqz_gguf_writer_add_i8(sqz_gguf_writer *w, const char *key, int8_t v);
sqz_status sqz_gguf_writer_add_u16(sqz_gguf_writer *w, const char *key, uint16_t v);
sqz_status sqz_gguf_writer_add_i16(sqz_gguf_writer *w, const char *key, int16_t v);
sqz_status sqz_gguf_writer_add_u32(sqz_gguf_writer *w, const char *key, uint32_t v);
sqz_status sqz_gguf_writer_add_i32(sqz_gguf_writer *w, const char *key, int32_t v);
sqz_status sqz_gguf_writer_add_u64(sqz_gguf_writer *w, const char *key, uint64_t v);
sqz_status sqz_gguf_writer_add_i64(sqz_gguf_writer *w, const char *key, int64_t v);
sqz_status sqz_gguf_writer_add_f32(sqz_gguf_writer *w, const char *key, float v);
sqz_status sqz_gguf_writer_add_f64(sqz_gguf_writer *w, const char *key, double v);
sqz_status sqz_gguf_writer_add_bool(sqz_gguf_writer *w, const char *key, int v); /* 0 / 1 */
/* A string of len bytes (it may hold any byte, NUL included). */
sqz_status sqz_gguf_writer_add_str(sqz_gguf_writer *w, const char *key, const char *s,
                                   size_t len);
/* An array of n fixed-size elements of elem_type (u8..f64, bool as uint8_t 0/1), packed in
 * host (= little-endian) order. Nested arrays: only through sqz_gguf_writer_copy_kv (ggml's
 * own reader refuses them). */
sqz_status sqz_gguf_writer_add_arr(sqz_gguf_writer *w, const char *key, int elem_type,
                                   const void *data, uint64_t n);
/* An array of n strings; lens[i] is the length of strs[i] (lens NULL: strlen of each). */
sqz_status sqz_gguf_writer_add_arr_str(sqz_gguf_writer *w, const char *key,
                                       const char *const *strs, const size_t *lens, uint64_t n);
/* Copies metadata entry i of g verbatim (any type, nested arrays included). */
sqz_status sqz_gguf_writer_copy_kv(sqz_gguf_writer *w, const sqz_gguf *g, size_t i);

/* A tensor: name (1..63 bytes, the limit of ggml's reader; unique), 1..4 dims, ne in ggml
 * order (ne[0] = row length), all >= 1; type any ggml type with a layout
 * (sqz_type_has_layout), ne[0] a multiple of its block size; nbytes must equal the
 * size the type and ne give. data is read by sqz_gguf_writer_write: it must stay valid until
 * then. Tensors are written in the order added. */
sqz_status sqz_gguf_writer_add_tensor(sqz_gguf_writer *w, const char *name, int n_dims,
                                      const int64_t *ne, int type, const void *data,
                                      size_t nbytes);
/* A tensor whose bytes are not there yet: checked as sqz_gguf_writer_add_tensor (but data);
 * *nbytes (when not NULL) gets the bytes it takes, which sqz_gguf_writer_put must then
 * deliver. A writer holding declared tensors writes only by streaming. */
sqz_status sqz_gguf_writer_declare_tensor(sqz_gguf_writer *w, const char *name, int n_dims,
                                          const int64_t *ne, int type, size_t *nbytes);

/* Makes the writer write sqz's container instead of GGUF: magic "SQZF", version 1, the rest
 * laid out exactly as GGUF v3; tensors may then also have sqz's own type ids (>= 1024, see
 * docs/sqzf.md). Call before adding tensors of such types. */
void sqz_gguf_writer_set_sqzf(sqz_gguf_writer *w, int on); /* before begin */

/* Writes the file: to path + ".tmp.XXXXXX" (mkstemp, same folder), fsync, rename over path,
 * fsync of the folder. On failure (SQZ_ERR_IO, message naming path) the temporary file is
 * removed and path is untouched. The new file has mode 0644. May be called more than once.
 * Every tensor must have its data (SQZ_ERR_ARG for a declared one). It is begin, one put per
 * tensor and finish: the bytes are those of the streamed file. */
sqz_status sqz_gguf_writer_write(sqz_gguf_writer *w, const char *path);

/* Streaming, for data produced (or read) one piece at a time: nothing but the current piece
 * needs to be in memory. The header - metadata, tensor infos with their offsets, padding -
 * depends only on names, shapes and types, so every tensor is added or declared first; then
 *   begin(w, path)  writes the header to path + ".tmp.XXXXXX" beside path;
 *   put(w, p, n)    appends the next n bytes of tensor data, tensors in the order added, split
 *                   anyhow (a put may end inside a tensor or span several); the alignment
 *                   padding after a tensor is written with its last byte;
 *   finish(w)       checks every tensor got all its bytes, fsyncs, renames over path.
 * Metadata or tensors added between begin and finish are refused (SQZ_ERR_ARG). Any failure
 * of begin, put or finish (SQZ_ERR_IO naming path; SQZ_ERR_ARG for more bytes than the tensors
 * hold, or fewer at finish) removes the temporary file and ends the stream: path is untouched
 * and a later put or finish is refused until a new begin. sqz_gguf_writer_free during a
 * stream removes the temporary file too. */
sqz_status sqz_gguf_writer_begin(sqz_gguf_writer *w, const char *path);
sqz_status sqz_gguf_writer_put(sqz_gguf_writer *w, const void *data, size_t n);
sqz_status sqz_gguf_writer_finish(sqz_gguf_writer *w);

#endif
