//! Every checkpoint the authors published loads without naming its architecture: the one
//! `model::load_file` finds from the tensors is the one the file name states (BRN, PReNet,
//! PRN, PReNet-GRU), at that architecture's default T, and the parity-tested network is what
//! it builds (same output as loading with the architecture given).

use burn::tensor::Tensor;
use burn_flex::Flex;
use model::BrnConfig;
use tests::shared;

#[test]
fn the_authors_files_load_without_naming_their_architecture() {
    let device = Default::default();
    let files = [
        ("brn/Rain100L.pth", "brn"),
        ("brn/Rain100H.pth", "brn"),
        ("brn/Rain1400.pth", "brn"),
        ("brn/RainLight.pth", "brn"),
        ("brn/RainHeavy.pth", "brn"),
        ("brn/generalization_model.pth", "brn"),
        ("prenet/Rain100L_PReNet6.pth", "prenet"),
        ("prenet/Rain100H_PReNet6.pth", "prenet"),
        ("prenet/Rain1400_PReNet6.pth", "prenet"),
        ("prenet/real_PReNet1.pth", "prenet"),
        ("prenet/Rain100L_PRN6.pth", "prn"),
        ("prenet/Rain100H_PRN6.pth", "prn"),
        ("prenet/Rain1400_PRN6.pth", "prn"),
        ("prenet/Ablation_PReNet6_GRU.pth", "prenet-gru"),
    ];
    for (file, arch) in files {
        let Some(path) = shared(&format!("weights/{file}")) else {
            continue;
        };
        let found = model::load_file::<Flex>(&path, None, &device)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let preset = BrnConfig::preset(arch).unwrap();
        assert_eq!(found.config, preset, "{file}");
        let given = model::load_weights::<Flex>(&path, &preset, &device).unwrap();
        let x = Tensor::<Flex, 4>::ones([1, 3, 12, 10], &device) * 0.4;
        let (a, b) = (
            found.run(x.clone(), 2, false).background.into_data(),
            given.run(x, 2, false).background.into_data(),
        );
        assert_eq!(a, b, "{file}");
        println!("{file}: {}", found.config.describe());
    }
}
