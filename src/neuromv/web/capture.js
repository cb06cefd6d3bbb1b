// AudioWorklet for the live mode: hands the microphone's samples (channels averaged, as neuromv.features.song_db
// does) to the page in blocks of BLOCK, where mel.js turns them into mel columns, each with the audio clock's time
// of its first render quantum ({samples, time}: the beat tracker times the clicks and columns by it). A block is
// small (256 samples): it is part of the live mode's latency.
"use strict";

const BLOCK = 256; // samples: two render quanta

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.time = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const n = input[0].length;
      if (this.filled === 0) this.time = currentTime; // the worklet's clock: this quantum's time
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let c = 0; c < input.length; c++) v += input[c][i];
        this.block[this.filled++] = v / input.length;
        if (this.filled === this.block.length) {
          this.port.postMessage({ samples: this.block, time: this.time });
          this.block = new Float32Array(BLOCK);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("neuromv-capture", Capture);
