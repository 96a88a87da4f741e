// AnimateDiff: mouse-over hints for the accordion's controls, and an "enabled" mark on its header.
// Keyed on element ids "animatediff-<tab>-<field>" (lib_animatediff/a1111/ui.py).
(function () {
    const hints = {
        "model": "Motion module file from the model folder (sub-folders included); 🔄 re-reads the folder",
        "format": "Files to write; PNG saves every frame, TXT the generation parameters",
        "enable": "Generate a video instead of a batch of images",
        "video-length": "Frames in the video; 0 = the context batch size, or the frame count of the video source",
        "fps": "Playback speed of the written video (frames per second)",
        "loop-number": "How often GIF/WEBP play; 0 = forever",
        "closed-loop": "N: no loop; R-P: windows wrap around the end so the video loops, prompt travel does not wrap; R+P: as R-P and prompt travel wraps; A: as R+P with one more wrapping window, and a video of one window becomes a ping-pong",
        "batch-size": "Context batch size: frames the motion module sees at once; longer videos are made of overlapping windows of this size (16 for most motion modules, up to 32 for some)",
        "stride": "Number of dilation levels: 1 = contiguous windows; higher values add windows of every 2nd, 4th, ... frame for steadier long-range motion",
        "overlap": "Frames shared by neighbouring windows; -1 = a quarter of the context batch size",
        "context-schedule": "How windows are laid out: uniform (the original's, shifts every step), static (fixed windows), batched (no overlap)",
        "fuse-method": "How overlapping windows are blended: pyramid favours each window's centre, flat averages, overwrite keeps the later window, gauss weighs by a Gaussian",
        "noise": "Initial noise: default (independent per frame) or freenoise (later windows start from shuffled copies of earlier noise: more coherent long videos)",
        "interp": "Insert in-between frames after generation: FILM (needs the Deforum extension) or Optical flow (built in, no weights)",
        "interp-x": "Output frames per generated frame when interpolating",
        "freeinit-enable": "Re-sample several times, keeping the low frequencies of the previous result: smoother motion, proportionally slower",
        "freeinit-filter": "Low-pass filter that picks which frequencies of the previous pass are kept",
        "freeinit-ds": "Spatial stop frequency of the filter (0 to 1)",
        "freeinit-dt": "Temporal stop frequency of the filter (0 to 1)",
        "freeinit-iters": "Number of sampling passes",
        "freeinit-noise": "High-frequency noise of each new pass: reuse the first pass's noise (the original) or draw fresh noise",
        "video-source": "A video whose frames feed ControlNet units without their own input; sets FPS and Number of frames",
        "video-path": "A folder of frames on the server that feeds ControlNet units without their own input",
        "latent-power": "How fast the init image's influence decays over the frames (higher = faster)",
        "latent-scale": "Frames over which the init image's influence decays",
        "latent-power-last": "Decay power of the optional last frame, counted from the end",
        "latent-scale-last": "Decay scale of the optional last frame, counted from the end",
        "last-frame": "Optional image the video should end on",
        "unload": "Move the cached motion module to CPU memory to free VRAM",
        "remove": "Drop the cached motion module from all memory",
    };

    function root() {
        return typeof gradioApp === "function" ? gradioApp() : document;
    }

    function applyHints() {
        for (const tab of ["txt2img", "img2img"]) {
            for (const [field, text] of Object.entries(hints)) {
                const element = root().querySelector(`#animatediff-${tab}-${field}`);
                if (element && !element.title) {
                    element.title = text;
                }
            }
        }
    }

    // Called by the accordion's Enable checkbox (also when infotext is pasted into it).
    window.animatediffShowEnabled = function (tab, enabled) {
        const accordion = root().querySelector(`#animatediff-${tab}-accordion`);
        if (accordion) {
            accordion.classList.toggle("animatediff-enabled", Boolean(enabled));
        }
    };

    if (typeof onUiLoaded === "function") {
        onUiLoaded(applyHints);
    } else {
        window.addEventListener("load", applyHints);
    }
})();
