//! Device names as users write them: `cpu`, `cuda` (GPU 0) or `cuda:N`.

use tch::Device;

/// The device named `name`, or `None` when it is not `cpu`, `cuda` or `cuda:N`. Whether that GPU
/// exists is for the caller to check (`tch::Cuda::device_count`).
pub fn parse_device(name: &str) -> Option<Device> {
    match name {
        "cpu" => Some(Device::Cpu),
        "cuda" => Some(Device::Cuda(0)),
        _ => name.strip_prefix("cuda:")?.parse().ok().map(Device::Cuda),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_device("cpu"), Some(Device::Cpu));
        assert_eq!(parse_device("cuda"), Some(Device::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Some(Device::Cuda(3)));
        for bad in ["", "gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            assert_eq!(parse_device(bad), None, "{bad}");
        }
    }
}
