/*
 * tests/support/rt_mkh5.c: builds and damages small HDF5 files for the
 * bad-input tests (h5py is not a dependency of the project).
 *
 *   rt_mkh5 create OUT [--chunk N] [--gzip] ARRAY...
 *       ARRAY = name:dtype:dims[:fill]
 *       dtype = u8 i8 i16 i32 i64 u16 u32 u64 f16 f32 f64 str
 *       dims  = 10x1x4x4 (0 allowed: an empty axis)
 *       fill  = comma list: mod=K (value i % K, the default with K = 3),
 *               const=V, nan=I, inf=I, set=I=V (element I gets V),
 *               learn=K: images N x C x H x W of K classes that a small
 *               CNN learns (sample i is of class i % K: channel
 *               class % C lit in the top or bottom half, over a fixed
 *               pattern; values are multiples of 1/32 in [0, 1], exact in
 *               float16), with hwc: the same images stored N x H x W x C,
 *               scale=S multiplies every value (224 makes uint8 exact)
 *   rt_mkh5 corrupt FILE DATASET CHUNK   overwrites the middle of one chunk
 *   rt_mkh5 attr FILE NAME VALUE         sets an int64 root attribute
 *   rt_mkh5 strattr FILE DATASET NAME VALUE  a string attribute on a
 *                                        dataset, variable-length UTF-8 as
 *                                        h5py writes it
 *   rt_mkh5 hold FILE SECONDS            keeps FILE open for writing (and
 *                                        so HDF5-locked), as a writer does
 *   rt_mkh5 unlink FILE PATH             removes a group or dataset
 *
 * --chunk and --gzip apply to the arrays that follow them (chunks of N
 * samples along the first axis; gzip also adds the fletcher32 checksum).
 */
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int die(const char *msg, const char *arg)
{
    fprintf(stderr, "rt_mkh5: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return 1;
}

static hid_t file_type(const char *t)
{
    static const struct {
        const char *name;
        hid_t *type;
    } table[] = {
        {"u8", &H5T_STD_U8LE_g},    {"i8", &H5T_STD_I8LE_g},   {"i16", &H5T_STD_I16LE_g},
        {"i32", &H5T_STD_I32LE_g},  {"i64", &H5T_STD_I64LE_g}, {"u16", &H5T_STD_U16LE_g},
        {"u32", &H5T_STD_U32LE_g},  {"u64", &H5T_STD_U64LE_g}, {"f32", &H5T_IEEE_F32LE_g},
        {"f64", &H5T_IEEE_F64LE_g},
    };
    H5open();
    if (strcmp(t, "f16") == 0) { /* IEEE half, built the way h5py builds 'f2' */
        static hid_t half = -1;
        if (half < 0) {
            half = H5Tcopy(H5T_IEEE_F32LE);
            H5Tset_fields(half, 15, 10, 5, 0, 10);
            H5Tset_size(half, 2);
            H5Tset_ebias(half, 15);
            H5Tset_precision(half, 16);
        }
        return half;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(t, table[i].name) == 0)
            return *table[i].type;
    return -1;
}

/* The learn=K images: element j of sample i, dims d = (N, C, H, W), or
 * (N, H, W, C) with hwc. */
static double learn_value(size_t i, size_t j, const hsize_t *d, int classes, int hwc)
{
    size_t C = hwc ? d[3] : d[1], H = hwc ? d[1] : d[2], W = hwc ? d[2] : d[3];
    size_t c, h, w;
    if (hwc) {
        c = j % C;
        w = j / C % W;
        h = j / C / W;
    } else {
        w = j % W;
        h = j / W % H;
        c = j / W / H;
    }
    size_t cls = i % (size_t)classes;
    size_t chw = (c * H + h) * W + w; /* the same pattern in either order */
    double v = (double)((i * 7 + chw * 5) % 8) / 32.0;
    int lit = c == cls % C && (h < H / 2) == ((cls / C) % 2 == 0);
    return lit ? v + 0.75 : v;
}

/* Values of every element, as doubles, from the fill list. */
static double *fill_values(size_t n, const char *fill, int rank, const hsize_t *d)
{
    double *v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return NULL;
    double mod = 3, cst = 0;
    int use_const = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", fill ? fill : "");
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (strncmp(tok, "mod=", 4) == 0)
            mod = atof(tok + 4);
        else if (strncmp(tok, "const=", 6) == 0) {
            use_const = 1;
            cst = atof(tok + 6);
        }
    }
    for (size_t i = 0; i < n; i++)
        v[i] = use_const ? cst : fmod((double)i, mod);
    int learn = 0, hwc = 0;
    double scale = 1.0;
    snprintf(buf, sizeof buf, "%s", fill ? fill : "");
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (strncmp(tok, "learn=", 6) == 0)
            learn = atoi(tok + 6);
        else if (strcmp(tok, "hwc") == 0)
            hwc = 1;
        else if (strncmp(tok, "scale=", 6) == 0)
            scale = atof(tok + 6);
    }
    if (learn > 0 && rank == 4 && d[0] > 0) {
        size_t per = n / (size_t)d[0];
        for (size_t k = 0; k < n; k++)
            v[k] = learn_value(k / per, k % per, d, learn, hwc);
    }
    for (size_t k = 0; k < n; k++)
        v[k] *= scale;
    snprintf(buf, sizeof buf, "%s", fill ? fill : "");
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        size_t at = 0;
        if (strncmp(tok, "nan=", 4) == 0 && (at = strtoul(tok + 4, NULL, 10)) < n)
            v[at] = NAN;
        else if (strncmp(tok, "inf=", 4) == 0 && (at = strtoul(tok + 4, NULL, 10)) < n)
            v[at] = INFINITY;
        else if (strncmp(tok, "set=", 4) == 0) {
            char *eq = NULL;
            at = strtoul(tok + 4, &eq, 10);
            if (at < n && eq && *eq == '=')
                v[at] = atof(eq + 1);
        }
    }
    return v;
}

static int make_array(hid_t f, char *desc, hsize_t chunk, int gzip)
{
    char *name = strtok(desc, ":"), *dtype = strtok(NULL, ":"), *dims = strtok(NULL, ":");
    char *fill = strtok(NULL, "");
    if (!name || !dtype || !dims)
        return die("array must be name:dtype:dims[:fill]", desc);
    hsize_t d[8];
    int rank = 0;
    size_t n = 1;
    for (char *p = dims; *p && rank < 8; rank++) {
        d[rank] = strtoull(p, &p, 10);
        n *= (size_t)d[rank];
        if (*p == 'x')
            p++;
    }
    hid_t sp = H5Screate_simple(rank, d, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk > 0 && d[0] > 0) {
        hsize_t cd[8];
        memcpy(cd, d, sizeof cd);
        cd[0] = chunk < d[0] ? chunk : d[0];
        H5Pset_chunk(dcpl, rank, cd);
        if (gzip) {
            H5Pset_fletcher32(dcpl);
            H5Pset_deflate(dcpl, 4);
        }
    }
    if (strcmp(dtype, "str") == 0) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 4);
        hid_t ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        char *s = calloc(n ? n : 1, 4);
        int rc = ds < 0 || H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0;
        free(s);
        H5Dclose(ds);
        H5Tclose(t);
        H5Pclose(dcpl);
        H5Sclose(sp);
        return rc ? die("cannot write", name) : 0;
    }
    hid_t ft = file_type(dtype);
    if (ft < 0)
        return die("unknown dtype", dtype);
    double *v = fill_values(n, fill, rank, d);
    hid_t ds = H5Dcreate2(f, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = !v || ds < 0 ||
             (n > 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0);
    free(v);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return rc ? die("cannot write", name) : 0;
}

static int cmd_create(int argc, char **argv)
{
    hid_t f = H5Fcreate(argv[2], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return die("cannot create", argv[2]);
    hsize_t chunk = 0;
    int gzip = 0, rc = 0;
    for (int i = 3; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc)
            chunk = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--gzip") == 0)
            gzip = 1;
        else
            rc = make_array(f, argv[i], chunk, gzip);
    }
    H5Fclose(f);
    return rc;
}

static int cmd_corrupt(const char *path, const char *dset, hsize_t index)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = f < 0 ? -1 : H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hsize_t off[8];
    unsigned mask;
    haddr_t addr = 0;
    hsize_t size = 0;
    herr_t st = sp < 0 ? -1 : H5Dget_chunk_info(ds, sp, index, off, &mask, &addr, &size);
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    if (f >= 0)
        H5Fclose(f);
    if (st < 0 || size < 16)
        return die("no such chunk", dset);
    int fd = open(path, O_WRONLY);
    char junk[8] = {'r', 'i', 'n', 'g', 'b', 'a', 'd', '!'};
    int bad = fd < 0 || pwrite(fd, junk, sizeof junk, (off_t)(addr + size / 2)) != sizeof junk;
    if (fd >= 0)
        close(fd);
    if (bad)
        return die("cannot write", path);
    printf("corrupted %s chunk %llu at byte %llu\n", dset, (unsigned long long)index,
           (unsigned long long)(addr + size / 2));
    return 0;
}

static int cmd_attr(const char *path, const char *name, long long value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        return die("cannot open", path);
    if (H5Aexists(f, name) > 0)
        H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t v = value;
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0;
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);
    return rc ? die("cannot set attribute", name) : 0;
}

static int cmd_strattr(const char *path, const char *dset, const char *name, const char *value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = f < 0 ? -1 : H5Dopen2(f, dset, H5P_DEFAULT);
    if (ds < 0) {
        if (f >= 0)
            H5Fclose(f);
        return die("cannot open", dset);
    }
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(ds, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, &value) < 0;
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(ds);
    H5Fclose(f);
    return rc ? die("cannot set attribute", name) : 0;
}

/* Holds FILE open read-write, so HDF5's file lock says a writer has it. */
static int cmd_hold(const char *path, unsigned seconds)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        return die("cannot open", path);
    printf("holding %s\n", path);
    fflush(stdout);
    sleep(seconds);
    H5Fclose(f);
    return 0;
}

static int cmd_unlink(const char *path, const char *link)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        return die("cannot open", path);
    int rc = H5Ldelete(f, link, H5P_DEFAULT) < 0;
    H5Fclose(f);
    return rc ? die("cannot remove", link) : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "create") == 0)
        return cmd_create(argc, argv);
    if (argc == 5 && strcmp(argv[1], "corrupt") == 0)
        return cmd_corrupt(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    if (argc == 5 && strcmp(argv[1], "attr") == 0)
        return cmd_attr(argv[2], argv[3], atoll(argv[4]));
    if (argc == 6 && strcmp(argv[1], "strattr") == 0)
        return cmd_strattr(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 4 && strcmp(argv[1], "hold") == 0)
        return cmd_hold(argv[2], (unsigned)atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "unlink") == 0)
        return cmd_unlink(argv[2], argv[3]);
    fprintf(stderr, "usage: rt_mkh5 create OUT [--chunk N] [--gzip] name:dtype:dims[:fill]...\n"
                    "       rt_mkh5 corrupt FILE DATASET CHUNK | attr FILE NAME INT | "
                    "unlink FILE PATH\n"
                    "       rt_mkh5 strattr FILE DATASET NAME TEXT | hold FILE SECONDS\n");
    return 2;
}
