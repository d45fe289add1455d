// An emulated GPU: the CUDA driver API and cuBLAS calls our bindings make (src/ElderCuda/Backends/Cuda/Interop),
// served on the CPU, with every kernel of kernels/*.cu run by the kernel emulator (emu.h). Loaded in place of
// libcuda, libcublas and libcublasLt (ELDR_CUDA, ELDR_CUBLAS, ELDR_CUBLASLT), it lets the CUDA backend's own code
// (launch shapes, transfers, the allocator, the model's GPU path) run its tests on a machine without a GPU. NVRTC is
// the real one: modules are compiled as on a GPU, and a kernel is only found in the module that declares it.
//
// Stricter than a GPU where that exposes bugs a GPU may hide by timing:
// - work on a stream runs only when something waits for it (a synchronize, an event wait, a blocking copy), so a host
//   read of a pinned buffer before the copy into it has been waited for sees the old contents;
// - a pinned source of an async upload is read when the stream runs the copy, not when it is issued;
// - new device memory and each launch's dynamic shared memory are filled with 0xff bytes (NaN in f32, bf16 and f16);
// - copies, memsets and GEMM operands must lie inside one allocation; launches are checked as a GPU checks them,
//   with the kernel's registers, __launch_bounds__ and static shared memory read from the cubin: threads per block
//   (1024, the launch bounds, and the 64K-register file), dynamic shared memory (48 KB less the static unless
//   cuFuncSetAttribute raised it; static and dynamic within the device's 227 KB).
// Work runs on the host thread that waits for it, one launch at a time. Not emulated: concurrency between streams and
// timing (events report host time). Accesses outside a device allocation inside a kernel are caught only when the
// library is built with AddressSanitizer (ELDR_EMU_ASAN=1; device allocations are exactly their size).
#include "emu.h"
#include "emugpu.h"
#include <chrono>
#include <fcntl.h>
#include <unistd.h>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace {

enum : int {
    OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, INVALID_IMAGE = 200, INVALID_HANDLE = 400,
    NOT_FOUND = 500, LAUNCH_OUT_OF_RESOURCES = 701, INVALID_DEVICE = 101, ILLEGAL_ADDRESS = 700,
};
constexpr int CUBLAS_EXECUTION_FAILED = 13;

// ELDR_EMU_STDERR=FILE, ELDR_EMU_STDERR_EXCEPT=TEXT: in a process whose command line does not contain TEXT (the test
// host, not eldr.dll), stderr is appended to FILE from the moment the library loads. dotnet test does not show a test host's stderr, and
// what the emulator has to say goes there: its own aborts (emu_fatal) and UBSan's reports (which ignore log_path when
// the library is dlopen'ed). Other processes (the eldr commands the CLI tests start) keep their stderr: those tests
// read it.
bool command_line_contains(const char* text) {
    FILE* f = std::fopen("/proc/self/cmdline", "rb");
    if (!f) return false;
    std::string cmd;
    for (int ch; (ch = std::fgetc(f)) != EOF;) cmd.push_back(ch ? (char)ch : ' ');
    std::fclose(f);
    return cmd.find(text) != std::string::npos;
}
const bool stderr_captured = [] {
    const char* p = std::getenv("ELDR_EMU_STDERR");
    const char* except = std::getenv("ELDR_EMU_STDERR_EXCEPT");
    if (!p || !*p || (except && *except && command_line_contains(except))) return false;
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return false;
    dup2(fd, 2); close(fd);
    return true;
}();

std::recursive_mutex mu;

// ELDR_EMUGPU_STATS=FILE: every driver and cuBLAS call this process makes is counted (launches per kernel name), and
// the counts are appended to FILE as the process exits ("count<TAB>call" lines after a "# pid command" line). For
// counting what a step costs in calls, launches above all, which the GPU pays for in host time.
const char* stats_path = std::getenv("ELDR_EMUGPU_STATS");
std::map<std::string, long> call_counts;   // under mu
void count_call(const std::string& what) { if (stats_path && *stats_path) call_counts[what]++; }
struct StatsWriter {
    ~StatsWriter() {
        if (!stats_path || !*stats_path || call_counts.empty()) return;
        FILE* f = std::fopen(stats_path, "a");
        if (!f) return;
        std::string cmd;
        if (FILE* c = std::fopen("/proc/self/cmdline", "rb")) { for (int ch; (ch = std::fgetc(c)) != EOF;) cmd.push_back(ch ? (char)ch : ' '); std::fclose(c); }
        std::fprintf(f, "# %d %s\n", (int)getpid(), cmd.c_str());
        for (auto& [k, n] : call_counts) std::fprintf(f, "%ld\t%s\n", n, k.c_str());
        std::fclose(f);
    }
} stats_writer;

#define LOCK std::lock_guard<std::recursive_mutex> lock_(mu); count_call(__func__); if (sticky) return sticky_status(__func__)

// ELDR_EMUGPU_FAULT=NAME: a launch of a kernel whose name contains NAME faults as a kernel with a bad address does on
// a GPU. The launch call itself succeeds; when the stream gets to it the kernel does not run, nothing queued after it
// runs, and the context keeps CUDA_ERROR_ILLEGAL_ADDRESS: every later driver call returns it (cuBLAS calls return
// CUBLAS_STATUS_EXECUTION_FAILED) until the primary context's last reference is released. For testing how the
// backend and the CLI report a kernel fault.
int sticky = 0;
int sticky_status(const char* fn) { return std::strncmp(fn, "cublas", 6) == 0 ? CUBLAS_EXECUTION_FAILED : sticky; }
const char* fault_kernel = std::getenv("ELDR_EMUGPU_FAULT");
int ctx_refs = 0;

bool initialized = false;

size_t env_size(const char* name, size_t dflt) {
    const char* v = std::getenv(name);
    return v && *v ? (size_t)std::strtoull(v, nullptr, 10) : dflt;
}
const size_t total_mem = env_size("ELDR_EMUGPU_MEM_MB", 8192) << 20;
const int sm_count = (int)env_size("ELDR_EMUGPU_SMS", 4);
const int cc = (int)env_size("ELDR_EMUGPU_CC", 90);
constexpr int max_smem_optin = 232448, default_smem = 48 * 1024;

std::map<uintptr_t, size_t> device_allocs, pinned_allocs;
size_t allocated = 0;

// the allocation [p, p+n) lies in, or false
bool inside(const std::map<uintptr_t, size_t>& m, uintptr_t p, size_t n) {
    auto it = m.upper_bound(p);
    if (it == m.begin()) return false;
    --it;
    return p >= it->first && p + n <= it->first + it->second;
}
bool on_device(uint64_t p, size_t n) { return n == 0 || inside(device_allocs, (uintptr_t)p, n); }
bool is_pinned(const void* p, size_t n) { return inside(pinned_allocs, (uintptr_t)p, n); }

struct Stream { unsigned flags = 0; std::deque<std::function<void()>> work; };
std::vector<Stream*> streams;
Stream legacy;   // stream 0: what a blocking call waits for

Stream* stream_of(void* s) { return s ? (Stream*)s : &legacy; }
void drain(Stream* s) {
    while (!s->work.empty()) { auto f = std::move(s->work.front()); s->work.pop_front(); if (!sticky) f(); }
}
void drain_all() { drain(&legacy); for (auto* s : streams) drain(s); }
// a blocking call (the legacy stream) waits for every blocking stream (flags 0), as CUDA's legacy default stream does
void drain_blocking() { drain(&legacy); for (auto* s : streams) if (s->flags == 0) drain(s); }
void enqueue(void* s, std::function<void()> f) {
    Stream* st = stream_of(s);
    if (st == &legacy) { drain_blocking(); if (!sticky) f(); } else st->work.push_back(std::move(f));
}

struct Module { std::vector<unsigned char> image; };
// What a GPU's launch checks come from, read out of the cubin as the driver does. 0 registers: not known (a PTX image).
struct Resources { int regs = 0; int max_threads = 1024; int static_smem = 0; };
struct Function {
    std::string name; EmuBinder bind; Resources res; int max_dyn_smem = default_smem;
    // the threads per block this kernel can be launched with: its __launch_bounds__, and the 64K-register file as
    // sm_80/sm_90 allocate it (per warp, in units of 256 registers)
    int max_threads() const {
        if (res.regs == 0) return res.max_threads;
        int per_warp = (res.regs * 32 + 255) / 256 * 256;
        return std::min(res.max_threads, 65536 / per_warp * 32);
    }
};
std::unordered_map<std::string, EmuBinder>& registry() { static std::unordered_map<std::string, EmuBinder> r; return r; }
std::map<std::pair<Module*, std::string>, Function*> functions;

struct Event { std::chrono::steady_clock::time_point t; bool done = false; };

double host_ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

const char* error_name(int e) {
    switch (e) {
    case OK: return "CUDA_SUCCESS";
    case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
    case INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case 218: return "CUDA_ERROR_INVALID_PTX";
    case 222: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
    default: return nullptr;
    }
}

int fail(int code, const char* fn, const char* what) {
    std::fprintf(stderr, "emugpu: %s: %s (%s)\n", fn, what, error_name(code));
    return code;
}

// the size of a module image: an ELF cubin from its header, PTX up to its terminating zero
size_t image_size(const unsigned char* p) {
    if (std::memcmp(p, "\x7f" "ELF", 4) == 0 && p[4] == 2) {
        uint64_t shoff, phoff; uint16_t shentsize, shnum, phentsize, phnum;
        std::memcpy(&phoff, p + 0x20, 8); std::memcpy(&shoff, p + 0x28, 8);
        std::memcpy(&phentsize, p + 0x36, 2); std::memcpy(&phnum, p + 0x38, 2);
        std::memcpy(&shentsize, p + 0x3a, 2); std::memcpy(&shnum, p + 0x3c, 2);
        return std::max<uint64_t>(shoff + (uint64_t)shentsize * shnum, phoff + (uint64_t)phentsize * phnum);
    }
    return std::strlen((const char*)p) + 1;
}

// does the image declare the kernel? (PTX: ".entry name("; cubin: the symbol's name, zero-terminated, in a string table)
bool image_declares(const std::vector<unsigned char>& img, const std::string& name) {
    auto it = img.begin();
    while ((it = std::search(it, img.end(), name.begin(), name.end())) != img.end()) {
        auto end = it + name.size();
        bool start_ok = it == img.begin() || !(std::isalnum(*(it - 1)) || *(it - 1) == '_');
        bool end_ok = end == img.end() || !(std::isalnum(*end) || *end == '_');
        if (start_ok && end_ok) return true;
        ++it;
    }
    return false;
}

// A kernel's resources in a cubin (ELF64): registers from the EIATTR_REGCOUNT (0x2f) entry of `.nv.info` that names the
// kernel's symbol; __launch_bounds__ from EIATTR_MAX_THREADS (0x05) in `.nv.info.<name>`; static shared memory is the
// size of `.nv.shared.<name>`. (In an sm_90 cubin that section also holds the 1 KB the system reserves per block, which
// ptxas does not report and the driver's 48 KB rule may not count: the emulator is stricter by at most 1 KB, and the
// backend, which asks cuFuncGetAttribute, then raises the limit a little sooner; no launch fails for it.) Entries of .nv.info are a format byte, an attribute byte, then by format: 0x01 nothing,
// 0x02 one byte, 0x03 two bytes, 0x04 a two-byte size and that many bytes.
Resources cubin_resources(const std::vector<unsigned char>& img, const std::string& name) {
    Resources r;
    const unsigned char* p = img.data();
    if (img.size() < 64 || std::memcmp(p, "\x7f" "ELF", 4) != 0 || p[4] != 2) return r;
    auto u16 = [&](size_t o) { uint16_t v; std::memcpy(&v, p + o, 2); return v; };
    auto u32 = [&](size_t o) { uint32_t v; std::memcpy(&v, p + o, 4); return v; };
    auto u64 = [&](size_t o) { uint64_t v; std::memcpy(&v, p + o, 8); return v; };
    uint64_t shoff = u64(0x28); uint16_t shentsize = u16(0x3a), shnum = u16(0x3c), shstrndx = u16(0x3e);
    struct Sec { uint32_t name, type, link; uint64_t off, size; };
    std::vector<Sec> secs;
    for (int i = 0; i < shnum; i++) {
        size_t h = shoff + (size_t)i * shentsize;
        secs.push_back({ u32(h), u32(h + 4), u32(h + 0x28), u64(h + 0x18), u64(h + 0x20) });
    }
    auto str = [&](int tab, uint32_t o) { return std::string((const char*)p + secs[tab].off + o); };
    long sym = -1;
    for (auto& s : secs)
        if (s.type == 2)   // SHT_SYMTAB: 24-byte entries
            for (uint64_t i = 0; i < s.size / 24 && sym < 0; i++)
                if (str(s.link, u32(s.off + i * 24)) == name) sym = (long)i;
    auto entries = [&](const Sec& s, auto&& each) {
        for (uint64_t o = s.off; o + 2 <= s.off + s.size;) {
            int fmt = p[o], attr = p[o + 1]; o += 2;
            if (fmt == 4) { int n = u16(o); o += 2; each(attr, o, n); o += n; }
            else if (fmt == 3) o += 2; else if (fmt == 2) o += 1; else if (fmt != 1) break;
        }
    };
    for (auto& s : secs) {
        std::string n = str(shstrndx, s.name);
        if (n == ".nv.info")
            entries(s, [&](int attr, uint64_t o, int len) { if (attr == 0x2f && len == 8 && u32(o) == (uint32_t)sym) r.regs = (int)u32(o + 4); });
        else if (n == ".nv.info." + name)
            entries(s, [&](int attr, uint64_t o, int len) { if (attr == 0x05 && len == 12) r.max_threads = (int)(u32(o) * u32(o + 4) * u32(o + 8)); });
        else if (n == ".nv.shared." + name)
            r.static_smem = (int)s.size;
    }
    return r;
}

uint16_t to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
enum : int { R_32F = 0, R_16F = 2, R_16BF = 14, COMPUTE_32F = 68 };
int elem_size(int t) { return t == R_32F ? 4 : (t == R_16F || t == R_16BF) ? 2 : 0; }
float load(const void* p, int t, size_t i) {
    if (t == R_32F) return ((const float*)p)[i];
    uint16_t h = ((const uint16_t*)p)[i];
    return t == R_16BF ? __uint_as_float((unsigned)h << 16) : emu_f16_to_f32(h);
}
void store(void* p, int t, size_t i, float v) {
    if (t == R_32F) ((float*)p)[i] = v;
    else ((uint16_t*)p)[i] = t == R_16BF ? to_bf16(v) : emu_f32_to_f16(v);
}

struct Blas { void* stream = nullptr; };

} // namespace

void emu_register_kernel(const char* name, EmuBinder bind) { registry()[name] = bind; }

extern "C" {

// ---- driver: init, device, context ------------------------------------------------------------------------
int cuInit(unsigned) { LOCK; initialized = true; return OK; }
// ELDR_EMUGPU_DRIVER_VERSION=12040: the CUDA version the emulated driver reports (default 13000), and with it the
// newest PTX ISA it loads (CUDA 11.8: 7.8, 12.x: 8.x, 13.0: 9.0), as a real driver refuses newer PTX
const int driver_version = (int)env_size("ELDR_EMUGPU_DRIVER_VERSION", 13000);
int cuDriverGetVersion(int* v) { *v = driver_version; return OK; }
int cuGetErrorName(int e, const char** s) { *s = error_name(e); return *s ? OK : INVALID_VALUE; }
int cuGetErrorString(int e, const char** s) { *s = error_name(e); return *s ? OK : INVALID_VALUE; }
int cuDeviceGetCount(int* n) { if (!initialized) return NOT_INITIALIZED; *n = 1; return OK; }
int cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return INVALID_DEVICE; *d = 0; return OK; }
int cuDeviceGetName(char* name, int len, int) { std::snprintf(name, len, "emulated GPU (CPU, sm_%d)", cc); return OK; }
int cuDeviceGetAttribute(int* v, int attr, int) {
    switch (attr) {
    case 1: *v = 1024; break;                 // max threads per block
    case 2: *v = 1024; break; case 3: *v = 1024; break; case 4: *v = 64; break;
    case 5: *v = 2147483647; break; case 6: *v = 65535; break; case 7: *v = 65535; break;
    case 8: *v = default_smem; break;         // max shared memory per block
    case 10: *v = 32; break;                  // warp size
    case 16: *v = sm_count; break;            // multiprocessors
    case 39: *v = 2048; break;                // max threads per multiprocessor
    case 75: *v = cc / 10; break; case 76: *v = cc % 10; break;
    case 97: *v = max_smem_optin; break;      // max shared memory per block, opt-in
    default: *v = 0;
    }
    return OK;
}
int cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = total_mem; return OK; }
int cuDevicePrimaryCtxRetain(void** ctx, int) { std::lock_guard<std::recursive_mutex> l(mu); static int c; *ctx = &c; ctx_refs++; return OK; }
// the last release destroys the primary context, and with it a sticky error (the next retain gets a fresh one)
int cuDevicePrimaryCtxRelease_v2(int) { std::lock_guard<std::recursive_mutex> l(mu); if (ctx_refs > 0 && --ctx_refs == 0) sticky = OK; return OK; }
int cuCtxSetCurrent(void*) { return OK; }
int cuCtxSynchronize() { LOCK; drain_all(); return sticky; }

// ---- streams and events --------------------------------------------------------------------------------------
int cuStreamCreate(void** s, unsigned flags) { LOCK; auto* st = new Stream; st->flags = flags; streams.push_back(st); *s = st; return OK; }
int cuStreamDestroy_v2(void* s) {
    LOCK;
    auto it = std::find(streams.begin(), streams.end(), (Stream*)s);
    if (it == streams.end()) return fail(INVALID_HANDLE, "cuStreamDestroy", "unknown stream");
    drain(*it); delete *it; streams.erase(it);
    return OK;
}
int cuStreamSynchronize(void* s) { LOCK; drain(stream_of(s)); return sticky; }
int cuEventCreate(void** e, unsigned) { *e = new Event; return OK; }
int cuEventDestroy_v2(void* e) { LOCK; delete (Event*)e; return OK; }
int cuEventRecord(void* e, void* s) {
    LOCK; auto* ev = (Event*)e; ev->done = false;
    enqueue(s, [ev] { ev->t = std::chrono::steady_clock::now(); ev->done = true; });
    return OK;
}
int cuEventSynchronize(void* e) { LOCK; drain_all(); if (sticky) return sticky; return ((Event*)e)->done ? OK : fail(INVALID_HANDLE, "cuEventSynchronize", "event never recorded"); }
int cuEventElapsedTime(float* ms, void* a, void* b) {
    LOCK; auto *ea = (Event*)a, *eb = (Event*)b;
    if (!ea->done || !eb->done) return fail(INVALID_HANDLE, "cuEventElapsedTime", "an event has not completed");
    *ms = (float)host_ms(ea->t, eb->t); return OK;
}
int cuEventElapsedTime_v2(float* ms, void* a, void* b) { return cuEventElapsedTime(ms, a, b); }

// ---- memory ------------------------------------------------------------------------------------------------
int cuMemAlloc_v2(uint64_t* p, size_t n) {
    LOCK;
    if (n == 0) return fail(INVALID_VALUE, "cuMemAlloc", "zero bytes");
    if (allocated + n > total_mem) return OUT_OF_MEMORY;
    void* q = nullptr;   // exactly n bytes (under ELDR_EMU_ASAN, a read past the end is reported)
    if (posix_memalign(&q, 256, n) != 0) return OUT_OF_MEMORY;
    std::memset(q, 0xff, n);   // new device memory is not zero on a GPU either
    device_allocs[(uintptr_t)q] = n; allocated += n; *p = (uint64_t)q;
    return OK;
}
int cuMemFree_v2(uint64_t p) {
    LOCK;
    if (p == 0) return OK;
    auto it = device_allocs.find((uintptr_t)p);
    if (it == device_allocs.end()) return fail(INVALID_VALUE, "cuMemFree", "not the start of an allocation");
    drain_all();   // cuMemFree waits for the device
    allocated -= it->second; device_allocs.erase(it); std::free((void*)p);
    return OK;
}
int cuMemAllocHost_v2(void** p, size_t n) {
    LOCK;
    if (const char* e = std::getenv("ELDR_EMUGPU_NO_PINNED"); e && *e) return OUT_OF_MEMORY;   // a host that cannot lock pages
    void* q = std::aligned_alloc(4096, (n + 4095) / 4096 * 4096);
    if (!q) return OUT_OF_MEMORY;
    pinned_allocs[(uintptr_t)q] = n; *p = q; return OK;
}
int cuMemFreeHost(void* p) {
    LOCK; auto it = pinned_allocs.find((uintptr_t)p);
    if (it == pinned_allocs.end()) return fail(INVALID_VALUE, "cuMemFreeHost", "not a pinned allocation");
    drain_all(); pinned_allocs.erase(it); std::free(p); return OK;
}
int cuMemGetInfo_v2(size_t* free_, size_t* total) { LOCK; *free_ = total_mem - allocated; *total = total_mem; return OK; }

#define NEED_DEVICE(fn, p, n) if (!on_device(p, n)) return fail(INVALID_VALUE, fn, "range outside any device allocation")

int cuMemsetD8_v2(uint64_t d, unsigned char v, size_t n) {
    LOCK; NEED_DEVICE("cuMemsetD8", d, n); drain_blocking(); if (sticky) return sticky; std::memset((void*)d, v, n); return OK;
}
int cuMemsetD8Async(uint64_t d, unsigned char v, size_t n, void* s) {
    LOCK; NEED_DEVICE("cuMemsetD8Async", d, n); enqueue(s, [=] { std::memset((void*)d, v, n); }); return OK;
}
int cuMemsetD16Async(uint64_t d, unsigned short v, size_t n, void* s) {
    LOCK; NEED_DEVICE("cuMemsetD16Async", d, 2 * n);
    enqueue(s, [=] { for (size_t i = 0; i < n; i++) ((uint16_t*)d)[i] = v; }); return OK;
}
int cuMemsetD32Async(uint64_t d, unsigned v, size_t n, void* s) {
    LOCK; NEED_DEVICE("cuMemsetD32Async", d, 4 * n);
    enqueue(s, [=] { for (size_t i = 0; i < n; i++) ((uint32_t*)d)[i] = v; }); return OK;
}
int cuMemcpyHtoD_v2(uint64_t d, const void* h, size_t n) {
    LOCK; NEED_DEVICE("cuMemcpyHtoD", d, n); drain_blocking(); if (sticky) return sticky; std::memcpy((void*)d, h, n); return OK;
}
int cuMemcpyDtoH_v2(void* h, uint64_t d, size_t n) {
    LOCK; NEED_DEVICE("cuMemcpyDtoH", d, n); drain_blocking(); if (sticky) return sticky; std::memcpy(h, (const void*)d, n); return OK;
}
int cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t n) {
    LOCK; NEED_DEVICE("cuMemcpyDtoD", dst, n); NEED_DEVICE("cuMemcpyDtoD", src, n);
    drain_blocking(); std::memmove((void*)dst, (const void*)src, n); return OK;
}
// pinned source: read when the stream runs the copy; pageable: staged now, as the driver does
int cuMemcpyHtoDAsync_v2(uint64_t d, const void* h, size_t n, void* s) {
    LOCK; NEED_DEVICE("cuMemcpyHtoDAsync", d, n);
    if (is_pinned(h, n)) enqueue(s, [=] { std::memcpy((void*)d, h, n); });
    else {
        auto staged = std::make_shared<std::vector<unsigned char>>((const unsigned char*)h, (const unsigned char*)h + n);
        enqueue(s, [=] { std::memcpy((void*)d, staged->data(), n); });
    }
    return OK;
}
// pinned destination: written when the stream runs the copy; pageable: the call returns once the copy is done
int cuMemcpyDtoHAsync_v2(void* h, uint64_t d, size_t n, void* s) {
    LOCK; NEED_DEVICE("cuMemcpyDtoHAsync", d, n);
    if (is_pinned(h, n)) enqueue(s, [=] { std::memcpy(h, (const void*)d, n); });
    else { drain(stream_of(s)); std::memcpy(h, (const void*)d, n); }
    return OK;
}
int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void* s) {
    LOCK; NEED_DEVICE("cuMemcpyDtoDAsync", dst, n); NEED_DEVICE("cuMemcpyDtoDAsync", src, n);
    enqueue(s, [=] { std::memmove((void*)dst, (const void*)src, n); }); return OK;
}

// ---- modules and launches ------------------------------------------------------------------------------------
int cuModuleLoadData(void** m, const void* image) {
    LOCK;
    if (!image) return fail(INVALID_IMAGE, "cuModuleLoadData", "no image");
    auto* p = (const unsigned char*)image;
    if (std::memcmp(p, "\x7f" "ELF", 4) != 0) {
        // PTX: text with a ".version X.Y" the driver knows (CUDA 11.x: 7.x, 12.x: 8.x, 13.x: 9.x)
        const char* v = std::strstr((const char*)p, ".version ");
        if (!v || !std::strstr((const char*)p, ".target ")) return fail(INVALID_IMAGE, "cuModuleLoadData", "neither a cubin nor PTX");
        int major = 0, minor = 0;
        if (std::sscanf(v + 9, "%d.%d", &major, &minor) != 2) return fail(218, "cuModuleLoadData", "a PTX .version that does not parse");
        int cuda_major = driver_version / 1000, cuda_minor = driver_version % 1000 / 10;
        int max_major = cuda_major - 4, max_minor = cuda_major == 11 || cuda_major == 12 ? cuda_minor : 0;
        if (major > max_major || (major == max_major && minor > max_minor))
            return fail(222, "cuModuleLoadData", "PTX newer than the driver (CUDA_ERROR_UNSUPPORTED_PTX_VERSION)");
    }
    auto* mod = new Module;
    mod->image.assign(p, p + image_size(p));
    *m = mod; return OK;
}
int cuModuleUnload(void* m) { LOCK; drain_all(); delete (Module*)m; return OK; }
int cuModuleGetFunction(void** f, void* m, const char* name) {
    LOCK;
    auto* mod = (Module*)m;
    auto key = std::make_pair(mod, std::string(name));
    if (auto it = functions.find(key); it != functions.end()) { *f = it->second; return OK; }
    auto r = registry().find(name);
    if (r == registry().end() || !image_declares(mod->image, name)) return NOT_FOUND;
    auto* fn = new Function{ name, r->second, cubin_resources(mod->image, name) };
    // as on a GPU: without the attribute, static and dynamic shared memory together stay within 48 KB
    fn->max_dyn_smem = std::max(0, default_smem - fn->res.static_smem);
    functions[key] = fn; *f = fn; return OK;
}
int cuFuncSetAttribute(void* f, int attr, int value) {
    LOCK;
    if (attr == 8) {   // max dynamic shared memory
        if (value < 0 || value + ((Function*)f)->res.static_smem > max_smem_optin)
            return fail(INVALID_VALUE, "cuFuncSetAttribute", "more shared memory (dynamic and static) than the device has");
        ((Function*)f)->max_dyn_smem = value;
    }
    return OK;
}
int cuFuncGetAttribute(int* v, int attr, void* f) {
    LOCK;
    switch (attr) {
    case 0: *v = ((Function*)f)->max_threads(); break;   // max threads per block
    case 1: *v = ((Function*)f)->res.static_smem; break; // static shared memory
    case 4: *v = ((Function*)f)->res.regs; break;        // registers per thread (0: a PTX image, not known)
    case 8: *v = ((Function*)f)->max_dyn_smem; break;
    default: *v = 0;
    }
    return OK;
}
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned smem, void* s, void** params, void** extra) {
    LOCK;
    auto* fn = (Function*)f;
    if (!fn) return fail(INVALID_HANDLE, "cuLaunchKernel", "no function");
    if (extra) return fail(INVALID_VALUE, "cuLaunchKernel", "extra is not supported");
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gy > 65535 || gz > 65535)
        return fail(INVALID_VALUE, fn->name.c_str(), "bad grid or block dimensions");
    if ((size_t)bx * by * bz > 1024) return fail(INVALID_VALUE, fn->name.c_str(), "more than 1024 threads per block");
    if ((int)smem > fn->max_dyn_smem) return fail(INVALID_VALUE, fn->name.c_str(), "more dynamic shared memory than the function allows");
    if ((size_t)bx * by * bz > (size_t)fn->res.max_threads)
        return fail(LAUNCH_OUT_OF_RESOURCES, fn->name.c_str(), "more threads per block than its __launch_bounds__");
    if ((size_t)bx * by * bz > (size_t)fn->max_threads())
        return fail(LAUNCH_OUT_OF_RESOURCES, fn->name.c_str(), "more registers than a block may have (threads x registers per thread > 64K)");
    count_call("launch " + fn->name);
    auto call = fn->bind(params);   // the arguments are copied now, as the driver does
    emu_dim3 grid{ gx, gy, gz }, block{ bx, by, bz };
    enqueue(s, [grid, block, smem, call, name = fn->name] {
        std::memset(emu_dyn_smem, 0xff, smem);
        emu_kernel_name = name.c_str();
        if (fault_kernel && *fault_kernel && name.find(fault_kernel) != std::string::npos) { sticky = ILLEGAL_ADDRESS; return; }
#if EMU_ASAN
        __asan_poison_memory_region(emu_smem_arena, emu_dyn_smem - emu_smem_arena);
        __asan_poison_memory_region(emu_dyn_smem + smem, emu_dyn_smem_max - smem);
#endif
        emu_launch(grid, block, call);
#if EMU_ASAN
        __asan_unpoison_memory_region(emu_smem_arena, sizeof emu_smem_arena);
#endif
    });
    // CUDA_LAUNCH_BLOCKING=1: as with the real driver, the launch returns when the kernel has run, with its error
    static const bool blocking = [] { const char* b = std::getenv("CUDA_LAUNCH_BLOCKING"); return b && !std::strcmp(b, "1"); }();
    if (blocking) { drain(stream_of(s)); return sticky; }
    return OK;
}

// ---- cuBLAS (column-major; host-side alpha and beta; fp32 compute) ----------------------------------------
int cublasCreate_v2(void** h) { *h = new Blas; return 0; }
int cublasDestroy_v2(void* h) { delete (Blas*)h; return 0; }
int cublasGetVersion_v2(void*, int* v) { *v = 130000; return 0; }
int cublasSetStream_v2(void* h, void* s) { ((Blas*)h)->stream = s; return 0; }
int cublasSetMathMode(void*, int) { return 0; }
const char* cublasGetStatusName(int s) {
    switch (s) { case 0: return "CUBLAS_STATUS_SUCCESS"; case 7: return "CUBLAS_STATUS_INVALID_VALUE"; case 15: return "CUBLAS_STATUS_NOT_SUPPORTED"; default: return "CUBLAS_STATUS_UNKNOWN"; }
}

// a·b in fp32 with 16 partial sums (vectorisable; the order of a GPU GEMM's sums is not specified either)
static float dot(const float* a, const float* b, int k) {
    float s[16] = {};
    int l = 0;
    for (; l + 16 <= k; l += 16)
        for (int u = 0; u < 16; u++) s[u] += a[l + u] * b[l + u];
    float acc = 0.f;
    for (int u = 0; u < 16; u++) acc += s[u];
    for (; l < k; l++) acc += a[l] * b[l];
    return acc;
}

// One strided-batched product, column-major, fp32 compute: D = al·op(A)·op(B) + be·C (+ bias[i] on row i), checked as
// cuBLAS checks it (sizes, leading dimensions) and with every operand inside one device allocation; then queued on the
// stream. C is not read when be = 0 (it may hold NaN). For cublasGemm*Ex, C and D are the same matrix.
struct GemmArgs {
    int ta, tb, m, n, k; float al, be;
    uint64_t A; int At; long long lda, sA;
    uint64_t B; int Bt; long long ldb, sB;
    uint64_t C; int Ct; long long ldc, sC;
    uint64_t D; int Dt; long long ldd, sD;
    int batch; uint64_t bias = 0; int biasT = -1;
};
int gemm(void* stream, const GemmArgs& g, const char* fn) {
    auto [ta, tb, m, n, k, al, be, A, At, lda, sA, B, Bt, ldb, sB, C, Ct, ldc, sC, D, Dt, ldd, sD, batch, bias, biasT] = g;
    if (!elem_size(At) || !elem_size(Bt) || !elem_size(Ct) || !elem_size(Dt) || (bias && !elem_size(biasT)))
        return fail(15, fn, "types not emulated");
    if (m < 0 || n < 0 || k < 0 || batch < 0) return fail(7, fn, "negative size");
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    if (lda < std::max(1, ar) || ldb < std::max(1, br) || ldc < std::max(1, m) || ldd < std::max(1, m))
        return fail(7, fn, "leading dimension too small");
    auto span = [](long long ld, int r, int c) { return (size_t)(c > 0 && r > 0 ? ld * (c - 1) + r : 0); };
    for (int b = 0; b < batch; b++) {
        if (!on_device(A + (uint64_t)(b * sA * elem_size(At)), span(lda, ar, ac) * elem_size(At)) ||
            !on_device(B + (uint64_t)(b * sB * elem_size(Bt)), span(ldb, br, bc) * elem_size(Bt)) ||
            (be != 0.f && !on_device(C + (uint64_t)(b * sC * elem_size(Ct)), span(ldc, m, n) * elem_size(Ct))) ||
            !on_device(D + (uint64_t)(b * sD * elem_size(Dt)), span(ldd, m, n) * elem_size(Dt)))
            return fail(7, fn, "an operand lies outside its device allocation");
    }
    if (bias && !on_device(bias, (size_t)m * elem_size(biasT))) return fail(7, fn, "the bias lies outside its device allocation");
    enqueue(stream, [=] {
        std::vector<float> a((size_t)m * k), bm((size_t)k * n);
        for (int bi = 0; bi < batch; bi++) {
            const void* pa = (const char*)A + bi * sA * elem_size(At);
            const void* pb = (const char*)B + bi * sB * elem_size(Bt);
            const void* pc = (const char*)C + bi * sC * elem_size(Ct);
            void* pd = (char*)D + bi * sD * elem_size(Dt);
            for (int i = 0; i < m; i++) for (int l = 0; l < k; l++) a[(size_t)i * k + l] = load(pa, At, ta ? (size_t)l + (size_t)i * lda : (size_t)i + (size_t)l * lda);
            for (int j = 0; j < n; j++) for (int l = 0; l < k; l++) bm[(size_t)j * k + l] = load(pb, Bt, tb ? (size_t)j + (size_t)l * ldb : (size_t)l + (size_t)j * ldb);
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    float v = al * dot(&a[(size_t)i * k], &bm[(size_t)j * k], k);
                    if (be != 0.f) v += be * load(pc, Ct, (size_t)i + (size_t)j * ldc);
                    if (bias) v += load((const void*)bias, biasT, (size_t)i);
                    store(pd, Dt, (size_t)i + (size_t)j * ldd, v);
                }
        }
    });
    return 0;
}

int cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, uint64_t A, int At, int lda, long long sA,
                               uint64_t B, int Bt, int ldb, long long sB, const void* beta, uint64_t C, int Ct, int ldc, long long sC,
                               int batch, int compute, int) {
    LOCK;
    if (compute != COMPUTE_32F) return fail(15, "cublasGemmEx", "compute type not emulated");
    GemmArgs g{ ta, tb, m, n, k, *(const float*)alpha, *(const float*)beta, A, At, lda, sA, B, Bt, ldb, sB,
                C, Ct, ldc, sC, C, Ct, ldc, sC, batch };
    return gemm(((Blas*)h)->stream, g, "cublasGemmEx");
}
int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, uint64_t A, int At, int lda, uint64_t B, int Bt, int ldb,
                 const void* beta, uint64_t C, int Ct, int ldc, int compute, int algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, At, lda, 0, B, Bt, ldb, 0, beta, C, Ct, ldc, 0, 1, compute, algo);
}

// ---- cuBLASLt: matmul and matrix-layout descriptors; fp32 compute and scale, column order, epilogue DEFAULT or BIAS --
struct LtDesc { int compute, scale, ta = 0, tb = 0; uint32_t epilogue = 1; uint64_t bias = 0; int biasT = -1; };
struct LtLayout { int type; uint64_t rows, cols; long long ld; int order = 0, batch = 1; long long stride = 0; };
enum : int { LT_EPILOGUE_DEFAULT = 1, LT_EPILOGUE_BIAS = 4 };

int cublasLtCreate(void** h) { static int lt; *h = &lt; return 0; }
int cublasLtDestroy(void*) { return 0; }
size_t cublasLtGetVersion() { return 130000; }

int cublasLtMatmulDescCreate(void** d, int compute, int scale) { *d = new LtDesc{ compute, scale }; return 0; }
int cublasLtMatmulDescDestroy(void* d) { delete (LtDesc*)d; return 0; }
int cublasLtMatmulDescSetAttribute(void* dp, int attr, const void* buf, size_t size) {
    auto* d = (LtDesc*)dp;
    auto get = [&](void* dst, size_t want) { if (size != want) return false; std::memcpy(dst, buf, want); return true; };
    bool ok;
    switch (attr) {
    case 3: ok = get(&d->ta, 4); break;            // TRANSA, int32
    case 4: ok = get(&d->tb, 4); break;            // TRANSB
    case 7: ok = get(&d->epilogue, 4); break;      // EPILOGUE, uint32
    case 8: ok = get(&d->bias, 8); break;          // BIAS_POINTER
    case 26: ok = get(&d->biasT, 4); break;        // BIAS_DATA_TYPE
    default: return fail(15, "cublasLtMatmulDescSetAttribute", "attribute not emulated");
    }
    return ok ? 0 : fail(7, "cublasLtMatmulDescSetAttribute", "wrong attribute size");
}
int cublasLtMatrixLayoutCreate(void** l, int type, uint64_t rows, uint64_t cols, long long ld) {
    *l = new LtLayout{ type, rows, cols, ld }; return 0;
}
int cublasLtMatrixLayoutDestroy(void* l) { delete (LtLayout*)l; return 0; }
int cublasLtMatrixLayoutSetAttribute(void* lp, int attr, const void* buf, size_t size) {
    auto* l = (LtLayout*)lp;
    auto get = [&](void* dst, size_t want) { if (size != want) return false; std::memcpy(dst, buf, want); return true; };
    bool ok;
    switch (attr) {
    case 1: ok = get(&l->order, 4); break;         // ORDER (0: column)
    case 5: ok = get(&l->batch, 4); break;         // BATCH_COUNT, int32
    case 6: ok = get(&l->stride, 8); break;        // STRIDED_BATCH_OFFSET, int64
    default: return fail(15, "cublasLtMatrixLayoutSetAttribute", "attribute not emulated");
    }
    return ok ? 0 : fail(7, "cublasLtMatrixLayoutSetAttribute", "wrong attribute size");
}
int cublasLtMatmul(void* h, void* descp, const void* alpha, uint64_t A, void* Ap, uint64_t B, void* Bp, const void* beta,
                   uint64_t C, void* Cp, uint64_t D, void* Dp, const void* algo, uint64_t workspace, size_t wsSize, void* stream) {
    LOCK;
    (void)h; (void)algo;
    auto* d = (LtDesc*)descp; auto *a = (LtLayout*)Ap, *b = (LtLayout*)Bp, *c = (LtLayout*)Cp, *o = (LtLayout*)Dp;
    const char* fn = "cublasLtMatmul";
    if (!d || !a || !b || !c || !o) return fail(7, fn, "a descriptor is null");
    if (d->compute != COMPUTE_32F || d->scale != R_32F) return fail(15, fn, "compute or scale type not emulated");
    if (a->order || b->order || c->order || o->order) return fail(15, fn, "only column order is emulated");
    if (d->epilogue != LT_EPILOGUE_DEFAULT && d->epilogue != LT_EPILOGUE_BIAS) return fail(15, fn, "epilogue not emulated");
    if (d->epilogue == LT_EPILOGUE_BIAS && !d->bias) return fail(7, fn, "the BIAS epilogue without a bias pointer");
    // D is m x n; op(A) m x k; op(B) k x n; C as D (and the same layout when it is D itself)
    uint64_t m = o->rows, n = o->cols, k = d->ta ? a->rows : a->cols;
    if ((d->ta ? a->cols : a->rows) != m || (d->tb ? b->cols : b->rows) != k || (d->tb ? b->rows : b->cols) != n)
        return fail(7, fn, "the layouts of A, B and D do not agree on m, n, k");
    if (c->rows != m || c->cols != n || c->type != o->type) return fail(7, fn, "C's layout is not D's shape and type");
    if (C == D && (c->ld != o->ld || c->stride != o->stride)) return fail(7, fn, "in place (C = D) with different layouts");
    if (a->batch != o->batch || b->batch != o->batch || c->batch != o->batch) return fail(7, fn, "batch counts differ");
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return fail(15, fn, "sizes past 2^31 not emulated");
    if (wsSize && !on_device(workspace, wsSize)) return fail(7, fn, "the workspace lies outside its device allocation");
    GemmArgs g{ d->ta, d->tb, (int)m, (int)n, (int)k, *(const float*)alpha, *(const float*)beta,
                A, a->type, a->ld, a->stride, B, b->type, b->ld, b->stride, C, c->type, c->ld, c->stride,
                D, o->type, o->ld, o->stride, o->batch,
                d->epilogue == LT_EPILOGUE_BIAS ? d->bias : 0, d->biasT == -1 ? o->type : d->biasT };
    return gemm(stream, g, fn);
}

} // extern "C"
