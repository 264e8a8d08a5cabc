# trainer.plot: removes the charts, runs scripts/plot_trainer.py on each output folder of the
# trainer's smoke runs, and checks that each chart was written again as a PNG file.
# -DPY=python -DSCRIPT=plot_trainer.py -DDIRS=dir;dir -DPNGS=file.png;file.png
file(REMOVE ${PNGS})
foreach(dir IN LISTS DIRS)
  execute_process(COMMAND ${PY} ${SCRIPT} ${dir} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "plot_trainer.py ${dir} failed: ${rc}")
  endif()
endforeach()
foreach(png IN LISTS PNGS)
  if(NOT EXISTS ${png})
    message(FATAL_ERROR "${png} was not written")
  endif()
  file(READ ${png} head LIMIT 8 HEX)
  if(NOT head STREQUAL "89504e470d0a1a0a")
    message(FATAL_ERROR "${png} is not a PNG file (starts with ${head})")
  endif()
endforeach()
