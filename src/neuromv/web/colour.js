// The colour adjustments of a picture: neuromv.renderer.color_matrix, the same maths, as a GLSL mat3 and offset.

/**
 * The affine colour map of the settings' hue (degrees), saturation, brightness and contrast:
 * c -> clamp(M c + offset, 0, 1) with M = contrast * S Hrot (Hrot: the hue rotation about the grey axis, S: the
 * saturation about the luma `luma`, neuromv.renderer.LUMA) and offset = 0.5 (1 - contrast) + brightness.
 * Returns { mat: Float32Array [9], column-major for GLSL's mat3 (column j holds M[0..2][j]), offset }.
 */
export function colorMatrix(s, luma) {
  const t = (s.hue * Math.PI) / 180, c = Math.cos(t), sn = Math.sin(t), k = 1 / Math.sqrt(3);
  // rotation about the grey axis: cos t I + sin t [k]x + (1 - cos t) k k^T
  const R = [[c + (1 - c) * k * k, -sn * k + (1 - c) * k * k, sn * k + (1 - c) * k * k],
             [sn * k + (1 - c) * k * k, c + (1 - c) * k * k, -sn * k + (1 - c) * k * k],
             [-sn * k + (1 - c) * k * k, sn * k + (1 - c) * k * k, c + (1 - c) * k * k]];
  const sat = s.saturation, M = [];
  for (let i = 0; i < 3; i++) {
    M.push([0, 1, 2].map((j) => {
      let v = 0;
      for (let m = 0; m < 3; m++) v += ((i === m ? sat : 0) + (1 - sat) * luma[m]) * R[m][j];
      return s.contrast * v;
    }));
  }
  const offset = 0.5 * (1 - s.contrast) + s.brightness;
  return { mat: new Float32Array([M[0][0], M[1][0], M[2][0], M[0][1], M[1][1], M[2][1], M[0][2], M[1][2], M[2][2]]),
           offset };
}
