# How the project runs mpiexec on one machine (tests and the vocab_parallel example): with Open
# MPI, allow more processes than cores and running as root, and keep all traffic on this host
# (self + shared memory between processes, out-of-band on loopback), so it works in a container
# without a network. Sets FUSEDKD_MPIEXEC_FLAGS and FUSEDKD_MPI_ENV (a list for ENVIRONMENT).
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _fusedkd_mpi_version
                ERROR_QUIET)
set(FUSEDKD_MPIEXEC_FLAGS "")
set(FUSEDKD_MPI_ENV "")
if(_fusedkd_mpi_version MATCHES "Open MPI|OpenRTE|open-mpi")
  set(FUSEDKD_MPIEXEC_FLAGS --oversubscribe)
  set(FUSEDKD_MPI_ENV
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
      OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_vader_single_copy_mechanism=none
      OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_osc=^ucx OMPI_MCA_mtl=^ofi)
endif()
