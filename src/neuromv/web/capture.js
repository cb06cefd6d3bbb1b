// AudioWorklet for the live mode: hands the microphone's samples (channels averaged, as neuromv.features.song_db
// does) to the page in blocks of 1024, where mel.js turns them into mel columns.
"use strict";

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(1024);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const n = input[0].length;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let c = 0; c < input.length; c++) v += input[c][i];
        this.block[this.filled++] = v / input.length;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block);
          this.block = new Float32Array(1024);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("neuromv-capture", Capture);
