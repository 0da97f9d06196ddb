// ResidentDecode in builds without CUDA.
#include "attention/resident_decode.h"

namespace lmkv {

Result<std::unique_ptr<ResidentDecode>> ResidentDecode::open(TieredStore&, GpuFusedIndex&,
                                                             const ResidentDecodeOptions&) {
  return Status::FailedPrecondition("resident decode needs a CUDA build of lmkv");
}

}  // namespace lmkv
