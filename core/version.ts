/**
 * The kernel's version, alone in a module so `keel --version` loads nothing else.
 * @module
 */

/** The kernel's own version; plugins declare a range of it in `kernel`. */
export const KERNEL_VERSION = "1.0.0";
