const t=performance.now(); while (performance.now()-t < 2000) {}
