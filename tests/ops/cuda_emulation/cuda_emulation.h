// Runs this project's CUDA kernels on the CPU, for tests on machines without a GPU.
//
// Every thread of a block is a coroutine (ucontext) on one OS thread; blocks run one after
// another, so `__shared__` (mapped to `static`) is shared by a block's threads exactly as on a
// GPU. A thread runs until it reaches a synchronisation point; the scheduler then runs the
// others in a seeded random order. Atomics are preemption points too, so lock-free code
// (union-find, atomic accumulation) sees many interleavings.
//
// Warp intrinsics (__shfl_sync, __shfl_down_sync, __shfl_xor_sync, __ballot_sync, __all_sync,
// __syncwarp) wait until every lane their mask names has arrived, and __syncthreads until
// every live thread has. Intrinsics no kernel here uses are left out: using one fails to compile.
// What CUDA leaves undefined fails loudly instead of returning garbage: a mask that names a lane
// which has exited, or lanes of one mask at different call sites (divergence), a source lane
// outside the mask, or a deadlock. This checks a kernel's logic (indexing, reductions,
// synchronisation, races between atomics); it says nothing about timing, occupancy or races
// between plain loads and stores.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <c10/core/Device.h>

using std::exp;
using std::fabs;
using std::fmax;
using std::fmin;
using std::isfinite;
using std::log;
using std::sqrt;

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using cudaStream_t = void*;

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() ((void)0)

namespace c10 {
namespace cuda {
struct CUDAGuard {  // one emulated device: nothing to switch
  explicit CUDAGuard(c10::Device) {}
};
struct CUDAStream {  // launches run at once, in order: one stream
  cudaStream_t stream() const { return nullptr; }
};
inline CUDAStream getCurrentCUDAStream() { return {}; }
}  // namespace cuda
}  // namespace c10

namespace segsort_emu {

enum class State { Runnable, AtWarp, AtBlock, Exited };
enum class Op { ShflIdx, ShflDown, ShflXor, Ballot, All, SyncWarp };

inline const char* op_name(Op op) {
  switch (op) {
    case Op::ShflIdx: return "__shfl_sync";
    case Op::ShflDown: return "__shfl_down_sync";
    case Op::ShflXor: return "__shfl_xor_sync";
    case Op::Ballot: return "__ballot_sync";
    case Op::All: return "__all_sync";
    case Op::SyncWarp: return "__syncwarp";
  }
  return "?";
}

struct Lane {
  ucontext_t ctx;
  State state = State::Exited;
  // The synchronisation point this lane waits at: call site, and how many warp operations
  // (or block barriers) it passed before, so that loop iterations are told apart.
  const char* file = nullptr;
  int line = 0;
  uint64_t warp_ops = 0, barriers = 0;
  Op op = Op::SyncWarp;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
};

constexpr size_t kStackBytes = 256 * 1024;

// Coroutine stacks, allocated once (uninitialised) and reused by every launch.
inline char* thread_stack(unsigned t) {
  static std::vector<std::unique_ptr<char[]>> pool;
  while (pool.size() <= t) pool.emplace_back(new char[kStackBytes]);
  return pool[t].get();
}

struct Scheduler {
  std::vector<Lane> lanes;
  ucontext_t main;
  int current = -1;
  unsigned threads = 0;
  std::function<void()> body;
  std::exception_ptr error;  // thrown inside a thread: rethrown by the scheduler
  std::mt19937 rng{12345};
};

inline Scheduler*& scheduler() {
  static Scheduler* s = nullptr;
  return s;
}

inline std::string where(const Lane& l) {
  std::ostringstream os;
  os << (l.file ? l.file : "?") << ":" << l.line;
  return os.str();
}

[[noreturn]] inline void fail(const std::string& what) {
  std::ostringstream os;
  os << "CUDA emulation: block (" << blockIdx.x << ", " << blockIdx.y << ", " << blockIdx.z << "): " << what;
  throw std::runtime_error(os.str());
}

inline void set_thread_index(unsigned t) {
  threadIdx = dim3(t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y));
}

inline void yield_to_scheduler() {
  Scheduler& s = *scheduler();
  swapcontext(&s.lanes[s.current].ctx, &s.main);
}

inline void lane_entry() {
  Scheduler& s = *scheduler();
  try {
    s.body();
  } catch (...) {  // must not unwind past this coroutine's first frame
    s.error = std::current_exception();
  }
  s.lanes[s.current].state = State::Exited;
  // uc_link returns to the scheduler
}

// Resolves one warp's pending warp operation once every lane it names has arrived.
// Returns true when lanes were released.
inline bool resolve_warp(Scheduler& s, unsigned warp) {
  const unsigned first = warp * 32, last = std::min(s.threads, first + 32);
  int leader = -1;
  for (unsigned t = first; t < last; ++t)
    if (s.lanes[t].state == State::AtWarp) {
      leader = static_cast<int>(t);
      break;
    }
  if (leader < 0) return false;
  const Lane& L = s.lanes[leader];
  const unsigned mask = L.mask;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    const unsigned t = first + lane;
    if (t >= last)
      fail(std::string(op_name(L.op)) + " at " + where(L) + ": mask names lane " + std::to_string(lane) +
           " beyond the block");
    const State st = s.lanes[t].state;
    if (st == State::Runnable) return false;  // still on its way
    if (st == State::Exited)
      fail(std::string(op_name(L.op)) + " at " + where(L) + ": mask names lane " + std::to_string(lane) +
           " of warp " + std::to_string(warp) + ", which has exited (undefined behaviour in CUDA)");
    if (st == State::AtBlock) return false;  // deadlock unless something else moves; caught by the caller
  }
  for (unsigned t = first; t < last; ++t) {
    const Lane& l = s.lanes[t];
    if (l.state != State::AtWarp) continue;
    const unsigned lane = t - first;
    if (!(mask >> lane & 1u) || l.mask != mask || l.op != L.op || l.line != L.line || l.file != L.file ||
        l.warp_ops != L.warp_ops)
      fail("divergent warp: lane " + std::to_string(t - first) + " waits at " + op_name(l.op) + " " + where(l) +
           " (mask " + std::to_string(l.mask) + "), lane " + std::to_string(leader - first) + " at " +
           op_name(L.op) + " " + where(L) + " (mask " + std::to_string(mask) + ")");
  }
  unsigned ballot = 0;
  for (unsigned lane = 0; lane < 32; ++lane)
    if ((mask >> lane & 1u) && s.lanes[first + lane].value != 0) ballot |= 1u << lane;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    Lane& l = s.lanes[first + lane];
    const unsigned width = static_cast<unsigned>(l.width), base = lane / width * width, pos = lane % width;
    int src = -1;
    switch (l.op) {
      case Op::ShflIdx: src = static_cast<int>(base + static_cast<unsigned>(l.arg) % width); break;
      case Op::ShflDown:
        src = pos + l.arg < width ? static_cast<int>(lane + l.arg) : static_cast<int>(lane);
        break;
      case Op::ShflXor: {
        const unsigned other = lane ^ static_cast<unsigned>(l.arg);
        src = other / width == lane / width ? static_cast<int>(other) : static_cast<int>(lane);
        break;
      }
      case Op::Ballot: l.result = ballot; break;
      case Op::All: l.result = (ballot == mask); break;
      case Op::SyncWarp: break;
    }
    if (src >= 0) {
      if (!(mask >> src & 1u))
        fail(std::string(op_name(l.op)) + " at " + where(l) + ": lane " + std::to_string(lane) + " reads lane " +
             std::to_string(src) + ", which is not in the mask");
      l.result = s.lanes[first + src].value;
    }
  }
  for (unsigned lane = 0; lane < 32; ++lane)
    if (mask >> lane & 1u) {
      Lane& l = s.lanes[first + lane];
      l.state = State::Runnable;
      ++l.warp_ops;
    }
  return true;
}

inline void run_block(Scheduler& s) {
  for (unsigned t = 0; t < s.threads; ++t) {
    Lane& l = s.lanes[t];
    l = Lane();
    getcontext(&l.ctx);
    l.ctx.uc_stack.ss_sp = thread_stack(t);
    l.ctx.uc_stack.ss_size = kStackBytes;
    l.ctx.uc_link = &s.main;
    makecontext(&l.ctx, &lane_entry, 0);
    l.state = State::Runnable;
  }
  std::vector<unsigned> order(s.threads);
  for (unsigned t = 0; t < s.threads; ++t) order[t] = t;
  while (true) {
    bool moved = false;
    std::shuffle(order.begin(), order.end(), s.rng);
    for (const unsigned t : order) {
      if (s.lanes[t].state != State::Runnable) continue;
      s.current = static_cast<int>(t);
      set_thread_index(t);
      swapcontext(&s.main, &s.lanes[t].ctx);
      if (s.error) std::rethrow_exception(s.error);
      moved = true;
    }
    for (unsigned w = 0; w * 32 < s.threads; ++w) moved = resolve_warp(s, w) || moved;
    if (moved) continue;
    bool all_exited = true, any_block = false, any_warp = false;
    for (const Lane& l : s.lanes) {
      all_exited = all_exited && l.state == State::Exited;
      any_block = any_block || l.state == State::AtBlock;
      any_warp = any_warp || l.state == State::AtWarp;
    }
    if (all_exited) return;
    if (any_block && !any_warp) {  // every live thread is at __syncthreads
      const Lane* ref = nullptr;
      for (Lane& l : s.lanes) {
        if (l.state != State::AtBlock) continue;
        if (ref && (l.line != ref->line || l.file != ref->file || l.barriers != ref->barriers))
          fail("divergent __syncthreads: threads wait at " + where(l) + " and at " + where(*ref));
        ref = &l;
      }
      for (Lane& l : s.lanes)
        if (l.state == State::AtBlock) {
          l.state = State::Runnable;
          ++l.barriers;
        }
      continue;
    }
    std::ostringstream os;
    os << "deadlock:";
    for (unsigned t = 0; t < s.threads; ++t) {
      const Lane& l = s.lanes[t];
      if (l.state == State::AtWarp) os << " thread " << t << " at " << op_name(l.op) << " " << where(l) << ";";
      if (l.state == State::AtBlock) os << " thread " << t << " at __syncthreads " << where(l) << ";";
    }
    fail(os.str());
  }
}

// kernel<<<grid, block, shared, stream>>>(args...) becomes launch(grid, block, shared, stream, kernel)(args...).
template <typename... Params>
struct Launch {
  dim3 grid, block;
  void (*kernel)(Params...);

  template <typename... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);  // by value, as a launch copies
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024)
      throw std::runtime_error("CUDA emulation: invalid block size " + std::to_string(threads));
    if (block.z > 64 || grid.y > 65535 || grid.z > 65535)
      throw std::runtime_error("CUDA emulation: grid/block dimension over CUDA's limits");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0)
      throw std::runtime_error("CUDA emulation: empty grid (cudaErrorInvalidConfiguration on a GPU)");
    Scheduler s;
    s.threads = threads;
    s.lanes.resize(threads);
    s.body = [&] { std::apply(kernel, params); };
    Scheduler* previous = scheduler();
    if (previous) throw std::runtime_error("CUDA emulation: kernel launched from a kernel");
    scheduler() = &s;
    blockDim = block;
    gridDim = grid;
    try {
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = dim3(x, y, z);
            run_block(s);
          }
    } catch (...) {
      scheduler() = nullptr;
      throw;
    }
    scheduler() = nullptr;
  }
};

inline dim3 as_dim3(dim3 d) { return d; }
template <typename T, typename = std::enable_if_t<std::is_integral<T>::value>>
dim3 as_dim3(T n) {
  return dim3(static_cast<unsigned>(n));
}

template <typename G, typename B, typename... Params>
Launch<Params...> launch(G grid, B block, size_t /*shared*/, cudaStream_t /*stream*/, void (*kernel)(Params...)) {
  return Launch<Params...>{as_dim3(grid), as_dim3(block), kernel};
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value, "unsupported shuffle type");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

inline uint64_t warp_op(const char* file, int line, Op op, unsigned mask, uint64_t value, int arg, int width) {
  Scheduler* s = scheduler();
  if (!s) throw std::runtime_error("CUDA emulation: warp intrinsic outside a kernel");
  Lane& l = s->lanes[s->current];
  const unsigned lane = static_cast<unsigned>(s->current) % 32;
  if (!(mask >> lane & 1u))
    fail(std::string(op_name(op)) + " at " + file + ":" + std::to_string(line) + ": calling lane " +
         std::to_string(lane) + " is not in its own mask");
  if (width <= 0 || width > 32 || (width & (width - 1)))
    fail(std::string(op_name(op)) + ": width must be a power of 2 in [1, 32]");
  l.state = State::AtWarp;
  l.file = file;
  l.line = line;
  l.op = op;
  l.mask = mask;
  l.value = value;
  l.arg = arg;
  l.width = width;
  yield_to_scheduler();
  return l.result;
}

template <typename T>
T shfl(const char* file, int line, Op op, unsigned mask, T value, int arg, int width = 32) {
  return from_bits<T>(warp_op(file, line, op, mask, to_bits(value), arg, width));
}

inline void syncthreads(const char* file, int line) {
  Scheduler* s = scheduler();
  Lane& l = s->lanes[s->current];
  l.state = State::AtBlock;
  l.file = file;
  l.line = line;
  yield_to_scheduler();
}

// An atomic read-modify-write: lets other threads run first, then applies f at once.
template <typename T, typename F>
T atomic_rmw(T* address, F f) {
  if (scheduler()) yield_to_scheduler();
  const T old = *address;
  *address = f(old);
  return old;
}

}  // namespace segsort_emu

#define __shfl_sync(...) ::segsort_emu::shfl(__FILE__, __LINE__, ::segsort_emu::Op::ShflIdx, __VA_ARGS__)
#define __shfl_down_sync(...) ::segsort_emu::shfl(__FILE__, __LINE__, ::segsort_emu::Op::ShflDown, __VA_ARGS__)
#define __shfl_xor_sync(...) ::segsort_emu::shfl(__FILE__, __LINE__, ::segsort_emu::Op::ShflXor, __VA_ARGS__)
#define __ballot_sync(mask, pred) \
  static_cast<unsigned>( \
      ::segsort_emu::warp_op(__FILE__, __LINE__, ::segsort_emu::Op::Ballot, mask, (pred) ? 1 : 0, 0, 32))
#define __all_sync(mask, pred) \
  static_cast<int>(::segsort_emu::warp_op(__FILE__, __LINE__, ::segsort_emu::Op::All, mask, (pred) ? 1 : 0, 0, 32))
#define __syncwarp(...) \
  ((void)::segsort_emu::warp_op(__FILE__, __LINE__, ::segsort_emu::Op::SyncWarp, segsort_emu_mask(__VA_ARGS__), \
                                0, 0, 32))
#define __syncthreads() ::segsort_emu::syncthreads(__FILE__, __LINE__)

inline unsigned segsort_emu_mask(unsigned mask = 0xffffffffu) { return mask; }

template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }

template <typename T>
T atomicAdd(T* address, T value) {
  return ::segsort_emu::atomic_rmw(address, [value](T old) { return static_cast<T>(old + value); });
}
template <typename T>
T atomicMin(T* address, T value) {
  return ::segsort_emu::atomic_rmw(address, [value](T old) { return std::min(old, value); });
}
