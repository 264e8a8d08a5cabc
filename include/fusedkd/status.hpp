// fusedkd/status.hpp — errors as values.
//
// Every fusedkd call returns a Status. The library never throws, prints or exits; a call that
// returns anything but Status::kSuccess has written nothing to its outputs.
#pragma once

namespace fusedkd {

/// Outcome of a fusedkd call. `status_name` gives a short snake_case name, `status_string` a sentence.
enum class Status {
  kSuccess = 0,
  kNullPointer,        ///< a pointer that the call needs is null
  kNegativeSize,       ///< N or C is negative
  kShapeMismatch,      ///< two matrices disagree on N or C, a row stride is smaller than C, or
                       ///< a matrix's rows would span more than PTRDIFF_MAX bytes
  kTooFewClasses,      ///< C is too small for the loss (2; 3 for USKD with soft labels)
  kLabelOutOfRange,    ///< a hard label is outside [0, C) and is not ignore_index
  kEmptySoftLabelRow,  ///< a soft-label row has no positive entry
  kInvalidOption,      ///< an option is out of its range for the computation type, or an enum
                       ///< (reduction, rank, labels kind) holds a value outside its list
  kOutOfMemory,        ///< a host scratch buffer could not be allocated
  kWorkspaceTooSmall,  ///< the CUDA workspace is smaller than the size query returned
  kNotSupported,       ///< this combination of inputs is not supported by the backend
  kCudaError,          ///< a CUDA runtime call or kernel launch failed
  kNonFiniteSoftLabel, ///< a soft label is NaN or infinite, or a soft row's sum is beyond the
                       ///< computation type (float: 3.4e38)
  kCommError,          ///< a collective of a dist/ adapter (MPI, NCCL) failed
};

/// Short stable name, e.g. "label_out_of_range" (the conformance format's error names).
inline const char* status_name(Status s) {
  switch (s) {
    case Status::kSuccess: return "success";
    case Status::kNullPointer: return "null_pointer";
    case Status::kNegativeSize: return "negative_size";
    case Status::kShapeMismatch: return "shape_mismatch";
    case Status::kTooFewClasses: return "too_few_classes";
    case Status::kLabelOutOfRange: return "label_out_of_range";
    case Status::kEmptySoftLabelRow: return "empty_soft_label_row";
    case Status::kInvalidOption: return "invalid_option";
    case Status::kOutOfMemory: return "out_of_memory";
    case Status::kWorkspaceTooSmall: return "workspace_too_small";
    case Status::kNotSupported: return "not_supported";
    case Status::kCudaError: return "cuda_error";
    case Status::kNonFiniteSoftLabel: return "non_finite_soft_label";
    case Status::kCommError: return "comm_error";
  }
  return "unknown_status";
}

/// A readable sentence that says what went wrong.
inline const char* status_string(Status s) {
  switch (s) {
    case Status::kSuccess: return "success";
    case Status::kNullPointer: return "a required pointer (logits, labels, loss) is null";
    case Status::kNegativeSize: return "N or C is negative";
    case Status::kShapeMismatch:
      return "the matrices disagree on N or C, a row stride is smaller than C, or the rows would "
             "span more than PTRDIFF_MAX bytes";
    case Status::kTooFewClasses:
      return "C is too small for this loss (at least 2; 3 for USKD with soft labels)";
    case Status::kLabelOutOfRange:
      return "label_out_of_range: a label is outside [0, C) and is not ignore_index";
    case Status::kEmptySoftLabelRow: return "a soft-label row has no positive entry";
    case Status::kInvalidOption:
      return "an option is out of range (float: weights and temperature within 2^40, temperature "
             ">= 2^-40; double: 2^340; smoothing in [0, 1]) or an enum value is unknown";
    case Status::kOutOfMemory: return "a host scratch buffer could not be allocated";
    case Status::kWorkspaceTooSmall: return "the workspace is smaller than the size query asked for";
    case Status::kNotSupported: return "this combination of inputs is not supported";
    case Status::kCudaError: return "a CUDA call or kernel launch failed";
    case Status::kNonFiniteSoftLabel:
      return "a soft label is NaN or infinite, or a soft-label row sums beyond the computation type";
    case Status::kCommError: return "a collective (MPI or NCCL) of a fusedkd/dist adapter failed";
  }
  return "unknown status";
}

}  // namespace fusedkd
