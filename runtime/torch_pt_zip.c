/* The zip container of torch.save files (runtime/torch_pt_internal.h). torch's writer (miniz in
 * PyTorchStreamWriter) stores every entry uncompressed, 64-byte aligned, with zip64 records
 * once the archive passes 4 GiB; that is all this reads. Nothing is extracted to disk: entries
 * are byte ranges of the in-memory file, every one checked against the file and its CRC-32. */
#include <stdlib.h>
#include <string.h>

#include "runtime/torch_pt_internal.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define MAX_ENTRIES (1u << 20)
#define MAX_NAME 4096

static uint32_t rd16(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t rd32(const unsigned char *p) {
    return rd16(p) | rd16(p + 2) << 16;
}
static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    static uint32_t tab[256];
    static int ready; /* idempotent table fill: racing threads write the same values */
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            tab[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = tab[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

void fl_ptz_free(fl_ptz *z) {
    for (size_t i = 0; i < z->n; i++)
        free(z->v[i].name);
    free(z->v);
    free(z->prefix);
    memset(z, 0, sizeof *z);
}

/* Finds the end-of-central-directory record: the last one whose comment ends the file. */
static int find_eocd(const unsigned char *b, size_t len, size_t *at) {
    if (len < 22) return -1;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;) {
        if (rd32(b + i) == SIG_EOCD && i + 22 + rd16(b + i + 20) == len) {
            *at = i;
            return 0;
        }
    }
    return -1;
}

/* Overrides from a zip64 extra field (id 1): the 64-bit values of the 32-bit fields that are
 * 0xFFFFFFFF, in the order usize, csize, offset. */
static int zip64_extra(const unsigned char *x, size_t xl, uint64_t *usz, uint64_t *csz,
                       uint64_t *off) {
    size_t i = 0;
    while (i + 4 <= xl) {
        uint32_t id = rd16(x + i), sz = rd16(x + i + 2);
        if (i + 4 + sz > xl) return -1;
        if (id == 1) {
            const unsigned char *p = x + i + 4, *end = p + sz;
            uint64_t *f[3] = {usz, csz, off};
            for (int k = 0; k < 3; k++) {
                if (*f[k] != 0xFFFFFFFFu) continue;
                if (p + 8 > end) return -1;
                *f[k] = rd64(p);
                p += 8;
            }
            return 0;
        }
        i += 4 + sz;
    }
    return 0;
}

int fl_ptz_open(fl_ptz *z, const unsigned char *b, size_t len, const char *label, fl_err *e) {
    memset(z, 0, sizeof *z);
    z->buf = b;
    z->len = len;
    if (len >= 2 && b[0] == 0x80 && b[1] <= 5)
        return fl_errf(
            e,
            "%s: legacy torch format (a bare pickle, not a zip archive): re-save it with "
            "torch>=1.6 (torch.save(torch.load(f), f))",
            label);
    if (len >= 262 && memcmp(b + 257, "ustar", 5) == 0)
        return fl_errf(e, "%s: legacy torch format (a tar archive): re-save it with torch>=1.6",
                       label);
    if (len < 4 || rd32(b) != SIG_LOCAL)
        return fl_errf(e, "%s: not a PyTorch checkpoint (no zip signature at the start%s)", label,
                       len < 4 ? ", file too short" : "");
    size_t eo;
    if (find_eocd(b, len, &eo))
        return fl_errf(
            e, "%s: truncated or damaged zip archive (no end-of-central-directory record)", label);
    uint64_t n = rd16(b + eo + 10), cd_size = rd32(b + eo + 12), cd_off = rd32(b + eo + 16);
    if (rd16(b + eo + 4) != 0 || rd16(b + eo + 6) != 0 || rd16(b + eo + 8) != n)
        return fl_errf(e, "%s: multi-disk zip archives are not supported", label);
    if (n == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (eo < 20 || rd32(b + eo - 20) != SIG_LOC64)
            return fl_errf(e, "%s: zip64 archive without its locator record", label);
        uint64_t o64 = rd64(b + eo - 20 + 8);
        if (len < 56 || o64 > len - 56 || rd32(b + o64) != SIG_EOCD64)
            return fl_errf(e, "%s: zip64 end-of-central-directory record out of the file", label);
        n = rd64(b + o64 + 32);
        cd_size = rd64(b + o64 + 40);
        cd_off = rd64(b + o64 + 48);
    }
    if (n == 0) return fl_errf(e, "%s: empty zip archive", label);
    if (n > MAX_ENTRIES)
        return fl_errf(e, "%s: %llu zip entries (limit %u)", label, (unsigned long long)n,
                       MAX_ENTRIES);
    if (cd_off > len || cd_size > len - cd_off)
        return fl_errf(
            e,
            "%s: zip central directory [%llu, +%llu) lies outside the %zu-byte file (truncated?)",
            label, (unsigned long long)cd_off, (unsigned long long)cd_size, len);
    z->v = calloc(n, sizeof *z->v);
    if (!z->v) return fl_errf(e, "%s: out of memory", label);
    const unsigned char *p = b + cd_off, *end = p + cd_size;
    for (uint64_t i = 0; i < n; i++) {
        if (end - p < 46 || rd32(p) != SIG_CENTRAL) {
            fl_ptz_free(z);
            return fl_errf(e, "%s: zip central directory entry %llu is damaged", label,
                           (unsigned long long)i);
        }
        uint32_t flags = rd16(p + 8), method = rd16(p + 10), crc = rd32(p + 16);
        uint64_t csz = rd32(p + 20), usz = rd32(p + 24), loff = rd32(p + 42);
        size_t nl = rd16(p + 28), xl = rd16(p + 30), cl = rd16(p + 32);
        if ((size_t)(end - p) < 46 + nl + xl + cl || nl == 0 || nl > MAX_NAME ||
            memchr(p + 46, 0, nl) || zip64_extra(p + 46 + nl, xl, &usz, &csz, &loff)) {
            fl_ptz_free(z);
            return fl_errf(e, "%s: zip central directory entry %llu has a bad name or extra field",
                           label, (unsigned long long)i);
        }
        char *name = malloc(nl + 1);
        if (!name) {
            fl_ptz_free(z);
            return fl_errf(e, "%s: out of memory", label);
        }
        memcpy(name, p + 46, nl);
        name[nl] = 0;
        z->v[z->n].name = name;
        z->n++;
        if (flags & 1) {
            fl_errf(e, "%s: zip entry '%s' is encrypted", label, name);
            fl_ptz_free(z);
            return -1;
        }
        if (method != 0) {
            fl_errf(e,
                    "%s: zip entry '%s' is compressed (method %u); torch.save stores entries "
                    "uncompressed, re-save the file with torch.save",
                    label, name, method);
            fl_ptz_free(z);
            return -1;
        }
        if (csz != usz || loff > len || len - loff < 30 || rd32(b + loff) != SIG_LOCAL) {
            fl_errf(e,
                    "%s: zip entry '%s': local header at %llu missing or sizes inconsistent "
                    "(truncated?)",
                    label, name, (unsigned long long)loff);
            fl_ptz_free(z);
            return -1;
        }
        uint64_t data = loff + 30 + rd16(b + loff + 26) + rd16(b + loff + 28);
        if (data > len || usz > len - data) {
            fl_errf(e,
                    "%s: zip entry '%s' ([%llu, +%llu)) extends past the end of the %zu-byte file "
                    "(truncated?)",
                    label, name, (unsigned long long)data, (unsigned long long)usz, len);
            fl_ptz_free(z);
            return -1;
        }
        if (crc32_of(b + data, usz) != crc) {
            fl_errf(e, "%s: zip entry '%s' fails its CRC-32 check (damaged file)", label, name);
            fl_ptz_free(z);
            return -1;
        }
        z->v[z->n - 1].off = data;
        z->v[z->n - 1].len = usz;
        p += 46 + nl + xl + cl;
    }
    /* torch names every entry <prefix>/...; the prefix is the first entry's directory. */
    const char *slash = strchr(z->v[0].name, '/');
    if (!slash || slash == z->v[0].name) {
        fl_errf(e, "%s: zip entry '%s' is not inside an archive directory: not a torch.save file",
                label, z->v[0].name);
        fl_ptz_free(z);
        return -1;
    }
    z->prefix = strndup(z->v[0].name, (size_t)(slash - z->v[0].name));
    if (!z->prefix) {
        fl_ptz_free(z);
        return fl_errf(e, "%s: out of memory", label);
    }
    if (!fl_ptz_find(z, "data.pkl")) {
        int jit = fl_ptz_find(z, "constants.pkl") != NULL;
        fl_errf(e, "%s: no %s/data.pkl in the zip archive: %s", label, z->prefix,
                jit ? "a TorchScript archive (torch.jit.save), not torch.save"
                    : "not a torch.save file");
        fl_ptz_free(z);
        return -1;
    }
    const fl_ptz_entry *bo = fl_ptz_find(z, "byteorder");
    if (bo && !(bo->len == 6 && memcmp(b + bo->off, "little", 6) == 0)) {
        fl_errf(e, "%s: byteorder is '%.*s', only little-endian checkpoints are read", label,
                (int)(bo->len < 16 ? bo->len : 16), (const char *)b + bo->off);
        fl_ptz_free(z);
        return -1;
    }
    return 0;
}

const fl_ptz_entry *fl_ptz_find(const fl_ptz *z, const char *rel) {
    size_t pl = strlen(z->prefix), rl = strlen(rel);
    for (size_t i = 0; i < z->n; i++) {
        const char *nm = z->v[i].name;
        if (strlen(nm) == pl + 1 + rl && !memcmp(nm, z->prefix, pl) && nm[pl] == '/' &&
            !strcmp(nm + pl + 1, rel))
            return &z->v[i];
    }
    return NULL;
}
